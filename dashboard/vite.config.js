// SPDX-License-Identifier: Apache-2.0
// Built into the CMake build tree (SYNERGOS_DASHBOARD_OUT); the director serves `/` and
// `/assets/*`.
import {defineConfig} from 'vite';

// `npm run dev` forwards the API to a running director: SYNERGOS_DIRECTOR (default
// http://127.0.0.1:5000, the standalone config's port).
const director = process.env.SYNERGOS_DIRECTOR || 'http://127.0.0.1:5000';

export default defineConfig({
    base: '/',
    server: {
        proxy: {
            '/v1': {target: director, changeOrigin: true},
            '/ttp': {target: director, changeOrigin: true},
        },
    },
    build: {
        outDir: process.env.SYNERGOS_DASHBOARD_OUT || 'dist',
        emptyOutDir: true,
        assetsDir: 'assets',
        sourcemap: false,
    },
});
