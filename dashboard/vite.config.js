// SPDX-License-Identifier: Apache-2.0
// Built into the CMake build tree (SYNERGOS_DASHBOARD_OUT); the director serves `/` and
// `/assets/*`.
import {defineConfig} from 'vite';

export default defineConfig({
    base: '/',
    build: {
        outDir: process.env.SYNERGOS_DASHBOARD_OUT || 'dist',
        emptyOutDir: true,
        assetsDir: 'assets',
        sourcemap: false,
    },
});
