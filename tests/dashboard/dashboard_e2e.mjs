// SPDX-License-Identifier: Apache-2.0
// Acceptance test of the web dashboard (issue 10): a standalone director and two workers run a
// real federated training of heart_disease; headless Chromium (Debian's, driven by
// playwright-core) watches the jobs page advance round by round without a reload, cancels a
// queued job, opens the run page and finds the loss chart and the validation metrics.
// Screenshots of every page go to --artifacts.
//
//   node dashboard_e2e.mjs --exe <synergos> --source <repo> --node-modules <dir with
//   playwright-core>
//                          --artifacts <dir> [--chromium /usr/bin/chromium] [--rounds 30] [--epochs
//                          300]
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) {
        acc.push([a.slice(2), all[i + 1]]);
    }
    return acc;
}, []));
for (const need of ['exe', 'source', 'node-modules', 'artifacts']) {
    if (!args[need]) {
        console.error(`dashboard_e2e: missing --${need}`);
        process.exit(2);
    }
}
const chromiumPath = args.chromium || '/usr/bin/chromium';
const rounds = Number(args.rounds || 30);
// Epochs per round: enough that the 30 rounds outlast the steps that need the training running
// (watch three rounds, check the repaints, cancel the queued job). At 20, a quiet machine
// finished the training in about 6 s and the queued job ran before it could be cancelled.
const epochs = Number(args.epochs || 300);
const require = createRequire(path.join(path.resolve(args['node-modules']), 'package.json'));
const {chromium} = require('playwright-core');

const artifacts = path.resolve(args.artifacts);
fs.rmSync(artifacts, {recursive: true, force: true});
fs.mkdirSync(artifacts, {recursive: true});
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'synergos-dashboard-'));
const children = [];
const T0 = Date.now();

function log(...m) {
    console.log(`[${((Date.now() - T0) / 1000).toFixed(1)}s]`, ...m);
}

function fail(message) {
    throw new Error(message);
}

/// Polls `probe` until it returns a truthy value; fails naming `what` after `timeoutMs`.
/// Marks the element at `selector`, waits `waitMs` and until the page has polled again, and
/// fails unless the element is still the marked one (a poll kept it instead of replacing it).
async function keptAcrossPolls(page, selector, what, waitMs) {
    await page.evaluate((sel) => {
        document.querySelector(sel).__marked = true;
    }, selector);
    const seenAt = await page.evaluate(() => document.getElementById('live').dataset.updated);
    await until(`more polls after marking ${what}`, async () => {
        await page.waitForTimeout(waitMs);
        return (await page.evaluate(() => document.getElementById('live').dataset.updated)) !==
            seenAt;
    }, 10000, 0);
    if (!(await page.evaluate((sel) => document.querySelector(sel)?.__marked === true,
                              selector))) {
        fail(`a poll replaced ${what} instead of keeping it`);
    }
}

/// Requests to URLs containing `part` that the page makes during `ms`.
async function requestsDuring(page, part, ms) {
    let n = 0;
    const count = (r) => {
        if (r.url().includes(part)) {
            n += 1;
        }
    };
    page.on('request', count);
    await page.waitForTimeout(ms);
    page.off('request', count);
    return n;
}

/// Runs `step` and drops the console errors Chromium logs for the HTTP `status` answers the
/// step provokes on purpose ("Failed to load resource: ... status of 403").
async function expectingStatus(consoleErrors, status, step) {
    const before = consoleErrors.length;
    await step();
    const added = consoleErrors.splice(before);
    consoleErrors.push(...added.filter((m) => !m.includes(`status of ${status}`)));
}

async function until(what, probe, timeoutMs = 60000, everyMs = 200) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
        try {
            const v = await probe();
            if (v) {
                return v;
            }
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            fail(`timed out after ${timeoutMs} ms waiting for ${what}${
                last ? `: ${last.message}` : ''}`);
        }
        await new Promise((r) => setTimeout(r, everyMs));
    }
}

/// Starts a `synergos` role and resolves with its port once it prints "listening on".
function start(name, argv) {
    const logFile = path.join(artifacts, `${name}.log`);
    const out = fs.openSync(logFile, 'w');
    const child = spawn(args.exe, argv, {stdio: ['ignore', 'pipe', out]});
    children.push(child);
    return new Promise((resolve, reject) => {
        let text = '';
        const timer = setTimeout(
            () => reject(new Error(`${name} did not start within 60 s (see ${logFile})`)), 60000);
        child.stdout.on('data', (chunk) => {
            fs.appendFileSync(logFile, chunk);
            text += chunk.toString();
            const m = text.match(/listening on https?:\/\/[^:]+:(\d+)/);
            if (m) {
                clearTimeout(timer);
                resolve(Number(m[1]));
            }
        });
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`${name} exited with ${code} before listening (see ${logFile})`));
        });
    });
}

async function stopAll() {
    await Promise.all(children.map((c) => new Promise((resolve) => {
                                       if (c.exitCode !== null || c.signalCode !== null) {
                                           resolve();
                                           return;
                                       }
                                       const timer = setTimeout(() => c.kill('SIGKILL'), 20000);
                                       c.on('exit', () => {
                                           clearTimeout(timer);
                                           resolve();
                                       });
                                       c.kill('SIGTERM');
                                   })));
}

let base = '';
async function api(method, p, body) {
    const init = {method, headers: {}, signal: AbortSignal.timeout(30000)};
    if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    const resp = await fetch(base + p, init);
    const json = await resp.json().catch(() => null);
    if (!resp.ok) {
        fail(`${method} ${p}: HTTP ${resp.status} ${JSON.stringify(json)}`);
    }
    return json;
}

async function job(id) {
    return (await api('GET', `/v1/jobs/${id}`)).data;
}

async function waitJob(id, states, timeoutMs) {
    return until(`job ${id} to reach ${states}`, async () => {
        const j = await job(id);
        if (j.state === 'failed' && !states.includes('failed')) {
            fail(`job ${id} failed: ${j.reason}`);
        }
        return states.includes(j.state) ? j : null;
    }, timeoutMs, 300);
}

async function main() {
    const src = path.resolve(args.source);
    const data = path.join(src, 'examples/data');
    const ports = {};
    for (const w of ['a', 'b']) {
        ports[w] = await start(`worker_${w}`, [
            'worker', '--config', path.join(src, 'configs/worker.yaml'), '--id', `worker_${w}`,
            '--port', '0', '--data-dir', data, '--outputs-dir',
            path.join(work, `worker_${w}/outputs`), '--mlflow-dir',
            path.join(work, `worker_${w}/mlflow`)
        ]);
    }
    const dport = await start('director', [
        'director', '--config', path.join(src, 'configs/director-standalone.yaml'), '--id',
        'director', '--port', '0', '--data-dir', path.join(work, 'director/data'), '--outputs-dir',
        path.join(work, 'director/outputs'), '--mlflow-dir', path.join(work, 'mlflow')
    ]);
    base = `http://127.0.0.1:${dport}`;
    log(`director on ${base}, workers on ${ports.a} and ${ports.b}`);

    // The heart_disease example, as examples/heart_disease/job.yaml describes it.
    const C = '/ttp/connect/collaborations';
    await api('POST', C, {collab_id: 'heart_collab'});
    await api(
        'POST', `${C}/heart_collab/projects`,
        {project_id: 'heart_project', action: 'classify', incentives: {tier_1: [], tier_2: []}});
    const model =
        JSON.parse(fs.readFileSync(path.join(data, 'heart_disease/architecture.json'), 'utf8'));
    const P = `${C}/heart_collab/projects/heart_project`;
    await api('POST', `${P}/experiments`, {expt_id: 'heart_expt', model});
    // Enough work per round (epochs) that the rounds can be watched at the page's 250 ms poll.
    const run = (id, n, e) => ({
        run_id: id,
        algorithm: 'FedAvg',
        rounds: n,
        epochs: e,
        batch_size: 32,
        optimizer: 'Adam',
        lr: 0.01,
        criterion: 'NLLLoss',
        lr_scheduler: '',
        patience: 100,
        seed: 42
    });
    await api('POST', `${P}/experiments/heart_expt/runs`, run('watched_run', rounds, epochs));
    await api('POST', `${P}/experiments/heart_expt/runs`, run('queued_run', 2, 1));
    const hospitals = [
        ['hospital_a', 'host', ports.a, 'data1', 'iid_1', 'non_iid_1'],
        ['hospital_b', 'guest', ports.b, 'data2', 'iid_2', 'non_iid_2']
    ];
    for (const [id, role, port, folder, train, evaluate] of hospitals) {
        await api('POST', '/ttp/connect/participants', {id});
        await api('POST', `${P}/participants/${id}/registration`, {
            role,
            n_count: 1,
            node_0: {host: '127.0.0.1', port, f_port: port, log_msgs: false, verbose: false}
        });
        await api('POST', `${P}/participants/${id}/registration/tags`, {
            train: [['heart_disease', folder, train]],
            evaluate: [['heart_disease', folder, evaluate]],
            predict: []
        });
    }
    const T = '/ttp/train/collaborations/heart_collab/projects/heart_project';
    const align = (await api('POST', `${T}/alignments`, {})).jobs[0];
    await waitJob(align.job_id, ['succeeded'], 120000);
    const watched = (await api('POST', `${T}/models/heart_expt/watched_run`, {})).jobs[0];
    const queued = (await api('POST', `${T}/models/heart_expt/queued_run`, {})).jobs[0];
    log(`training job ${watched.job_id} (${rounds} rounds), queued job ${queued.job_id}`);

    const browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        handleSIGTERM: false,
        handleSIGINT: false,
        args: [
            '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'
        ],
    });
    try {
        const context = await browser.newContext({viewport: {width: 1280, height: 900}});
        const page = await context.newPage();
        const consoleErrors = [];
        page.on('console', (m) => {
            if (m.type() === 'error') {
                consoleErrors.push(m.text());
            }
        });
        page.on('pageerror', (e) => consoleErrors.push(e.message));
        const shot = async (name) => {
            await page.screenshot({path: path.join(artifacts, `${name}.png`), fullPage: true});
            log(`screenshot ${name}.png`);
        };

        // 1. The jobs page follows the training round by round, without reloading.
        await page.goto(`${base}/?poll=250#/jobs`);
        await page.evaluate(() => {
            window.__sameDocument = true;
        });
        const roundCell = page.locator(`[data-testid="round-${watched.job_id}"]`);
        const seen = [];
        await until('the jobs page to show several rounds of the training', async () => {
            if (await roundCell.count() === 1) {
                const m = (await roundCell.textContent()).match(/round (\d+) \/ (\d+)/);
                if (m && Number(m[2]) !== rounds) {
                    fail(`the page shows ${m[2]} rounds, the run has ${rounds}`);
                }
                if (m && (seen.length === 0 || seen[seen.length - 1] !== Number(m[1]))) {
                    seen.push(Number(m[1]));
                    log(`jobs page: round ${m[1]} / ${m[2]}`);
                }
            }
            return seen.length >= 3;
        }, 300000, 100);
        for (let i = 1; i < seen.length; ++i) {
            if (seen[i] <= seen[i - 1]) {
                fail(`rounds went backwards on the page: ${seen.join(', ')}`);
            }
        }
        if (!(await page.evaluate(() => window.__sameDocument === true))) {
            fail('the jobs page reloaded to show progress');
        }
        // The queued job waits behind the training and says so.
        const queuedRow =
            page.locator(`[data-testid="jobs-queued"] tr[data-job="${queued.job_id}"]`);
        await until(
            'the queued job on the jobs page', async () => (await queuedRow.count()) === 1, 10000);
        await shot('jobs-running');
        // Polls keep the rows they can: a row replaced between a click's mouse down and up
        // loses the click (the cancel below once did nothing in about one run of ten).
        await keptAcrossPolls(
            page, `[data-testid="jobs-queued"] tr[data-job="${queued.job_id}"]`,
            'the queued job\'s row', 1000);

        // The job column tells jobs apart: ids start with their creation time, so it shows
        // their random tail (it showed 'job-01a2' for every job).
        const idText =
            await page.locator(`tr[data-job="${watched.job_id}"] a.job-id`).textContent();
        if (!idText.endsWith(watched.job_id.slice(-8))) {
            fail(`the job column shows '${idText}' for ${watched.job_id}`);
        }

        // A refused cancel (a read-only token: 403) stays on the page until dismissed; the
        // next poll used to clear it within milliseconds, so Cancel seemed to do nothing.
        await expectingStatus(consoleErrors, 403, async () => {
            await page.route('**/v1/jobs/*/cancel', (r) => r.fulfill({
                status: 403,
                contentType: 'application/json',
                body: JSON.stringify(
                    {success: false, status: 403, message: 'this token has the read scope only'}),
            }));
            page.once('dialog', (d) => d.accept());
            await queuedRow.locator('button.cancel').click({timeout: 10000});
            const refused = page.locator('[data-testid="action-error"]');
            await until(
                'the refused cancel on the page',
                async () => (await refused.isVisible()) &&
                    (await refused.textContent()).includes('read scope only'),
                10000);
            await keptAcrossPolls(
                page, '[data-testid="action-error"]', 'the refused cancel\'s message', 600);
            if (!(await refused.isVisible())) {
                fail('a poll cleared the refused cancel\'s message');
            }
            await page.locator('#action-error-close').click();
            if (await refused.isVisible()) {
                fail('the refused cancel\'s message stays after it is dismissed');
            }
            await page.unroute('**/v1/jobs/*/cancel');
        });
        if ((await job(queued.job_id)).state !== 'queued') {
            fail('the refused cancel changed the queued job');
        }

        // 2. Cancel the queued job from the jobs page (it waits behind the training).
        page.once('dialog', (d) => d.accept());
        await queuedRow.locator('button.cancel').click({timeout: 10000});
        const before = await job(watched.job_id);
        if (before.state !== 'running') {
            fail(`the training is ${before.state} already: the queued job may have run before ` +
                 'the cancel (raise --epochs)');
        }
        await until(
            'the cancelled job under "Failed or cancelled"',
            async () =>
                (await page
                     .locator(
                         `[data-testid="jobs-failed"] tr[data-job="${queued.job_id}"] td.state`)
                     .textContent({timeout: 1000})) === 'cancelled',
            15000);
        const cancelled = await job(queued.job_id);
        if (cancelled.state !== 'cancelled') {
            fail(`the API says the queued job is ${cancelled.state}, not cancelled`);
        }
        log('queued job cancelled from the page');

        // 3. The live run page draws the rounds so far.
        await page.goto(`${base}/?poll=250#/run/${watched.job_id}`);
        await until('the live loss chart', async () => {
            const n = await page.locator('[data-testid="loss-chart"]').getAttribute('data-rounds', {
                timeout: 1000
            });
            return Number(n) >= 1;
        }, 60000);
        // New rounds are drawn into the same chart: rebuilding it at each poll reset a zoom or
        // a series hidden in the legend within a second.
        const liveChart = page.locator('[data-testid="loss-chart"]');
        const drawn = Number(await liveChart.getAttribute('data-rounds'));
        await page.evaluate(() => {
            document.querySelector('[data-testid="loss-chart"]').__marked = true;
        });
        await until(
            'a new round on the live chart',
            async () => Number(await liveChart.getAttribute('data-rounds', {timeout: 1000})) > drawn,
            60000);
        if (!(await page.evaluate(
                () => document.querySelector('[data-testid="loss-chart"]')?.__marked === true))) {
            fail('the live chart was rebuilt for a new round instead of drawing it');
        }
        const live = await page.locator('[data-testid="history-source"]').textContent();
        const running = await job(watched.job_id);
        log(`live run page: ${live} (job ${running.state})`);
        await shot('run-live');

        // 4. The training finishes; its run page shows every round, per participant and global.
        const done = await waitJob(watched.job_id, ['succeeded'], 600000);
        await page.goto(`${base}/?poll=250#/jobs`);
        await until(
            'the jobs page to show the training finished',
            async () =>
                (await page
                     .locator(`[data-testid="jobs-finished"] tr[data-job="${watched.job_id}"]`)
                     .count()) === 1,
            15000);
        await shot('jobs');
        const V = '/ttp/evaluate/collaborations/heart_collab/projects/heart_project';
        const val = (await api('POST', `${V}/validations/heart_expt/watched_run`, {})).jobs[0];
        await waitJob(val.job_id, ['succeeded'], 180000);
        log(`training ran ${done.outputs?.summary?.rounds_run} rounds; validation done`);

        await page.goto(`${base}/?poll=250#/run/${watched.job_id}`);
        const chart = page.locator('[data-testid="loss-chart"]');
        await until(
            'the full loss chart',
            async () => Number(await chart.getAttribute('data-rounds', {timeout: 1000})) === rounds,
            30000);
        if ((await chart.locator('canvas').count()) < 1) {
            fail('the loss chart has no canvas');
        }
        const legend = (await chart.textContent()) || '';
        for (const series of ['global train', 'global evaluate', 'hospital_a', 'hospital_b']) {
            if (!legend.includes(series)) {
                fail(`the loss chart has no series '${series}' (legend: ${legend})`);
            }
        }
        const metrics = page.locator('[data-testid="metrics"]');
        await until(
            'the validation metrics table', async () => (await metrics.count()) === 1, 30000);
        const metricsText = await metrics.textContent();
        for (const needed of ['hospital_a', 'hospital_b', 'accuracy']) {
            if (!metricsText.includes(needed)) {
                fail(`the metrics table lacks '${needed}': ${metricsText}`);
            }
        }
        const accuracy =
            await metrics.locator('tbody tr')
                .first()
                .locator('td')
                .nth((await metrics.locator('thead th').allTextContents()).indexOf('accuracy'))
                .textContent();
        // Per-class statistics show their mean over the classes.
        if (!(parseFloat(accuracy) > 0 && parseFloat(accuracy) <= 1)) {
            fail(`accuracy '${accuracy}' is not a fraction`);
        }
        const hp = await page.locator('[data-testid="hyperparameters"]').textContent();
        if (!hp.includes('rounds') || !hp.includes(String(rounds))) {
            fail(`the hyper-parameters table lacks rounds=${rounds}: ${hp}`);
        }
        if ((await page.locator('[data-testid="model-link"]').count()) !== 1 ||
            (await page.locator('[data-testid="mlflow-link"]').count()) !== 1) {
            fail('the run page has no model or MLflow link');
        }
        const modelHref = await page.locator('[data-testid="model-link"]').getAttribute('href');
        const modelRecord = await api('GET', modelHref);
        if (!modelRecord.data || modelRecord.data.length !== 1) {
            fail(`the model link ${modelHref} does not answer the model record`);
        }
        // Polls keep the chart and what follows it.
        await keptAcrossPolls(page, '[data-testid="loss-chart"]', 'the finished run\'s chart', 600);
        await keptAcrossPolls(page, '[data-testid="model-link"]', 'the run page\'s model link', 600);
        // A finished job's page changes rarely: it polls ten times less often (each poll of it
        // reads the MLflow store).
        const finishedPolls = await requestsDuring(page, `/v1/dashboard/jobs/${watched.job_id}`, 2000);
        if (finishedPolls > 2) {
            fail(`a finished job's page polled ${finishedPolls} times in 2 s at ?poll=250`);
        }
        // The model record opens on the page, fetched with the page's token (a plain link
        // carries no Authorization header: 401 wherever tokens are set).
        await page.locator('[data-testid="model-link"]').click();
        const record = page.locator('[data-testid="model-record"]');
        await until(
            'the model record on the run page',
            async () => (await record.count()) === 1 &&
                (await record.textContent()).includes('watched_run'),
            10000);
        log(`run page: chart with ${rounds} rounds, accuracy ${accuracy}`);
        await shot('run');

        // 5. The other pages, with their content.
        await page.goto(`${base}/#/cluster`);
        for (const w of ['hospital_a', 'hospital_b']) {
            await until(
                `${w} healthy on the cluster page`,
                async () => (await page.locator(`[data-testid="worker-${w}"] td.health`)
                                 .textContent({timeout: 1000})) === 'ok',
                15000);
        }
        await until(
            'the embedded TTP on the cluster page',
            async () =>
                ((await page.locator('[data-testid="grid-0"]').textContent({timeout: 1000})) ||
                 '').includes('director/ttp-0'),
            15000);
        await shot('cluster');
        // A director that fails every poll is asked less and less often, and a refused token
        // stops the polling until another one is saved.
        await expectingStatus(consoleErrors, 503, async () => {
            await page.route('**/v1/dashboard/cluster', (r) => r.fulfill({
                status: 503,
                contentType: 'application/json',
                body: JSON.stringify({success: false, status: 503, message: 'unavailable'}),
            }));
            await page.goto(`${base}/?poll=250#/cluster`);
            const failing = await requestsDuring(page, '/v1/dashboard/cluster', 3000);
            // Without backing off: a poll every 250 ms, 12 in 3 s; backing off: 1 + 500 ms +
            // 1 s + 2 s.
            if (failing > 5) {
                fail(`a failing director was polled ${failing} times in 3 s at ?poll=250`);
            }
            await page.unroute('**/v1/dashboard/cluster');
        });
        await expectingStatus(consoleErrors, 401, async () => {
            await page.route('**/v1/dashboard/cluster', (r) => r.fulfill({
                status: 401,
                contentType: 'application/json',
                body: JSON.stringify({success: false, status: 401, message: 'a token is required'}),
            }));
            await page.goto(`${base}/?poll=250#/cluster`);
            await until(
                'the refused token on the page',
                async () => (await page.locator('#error').textContent()).includes('polling paused'),
                10000);
            const refused = await requestsDuring(page, '/v1/dashboard/cluster', 2000);
            if (refused !== 0) {
                fail(`the page polled ${refused} times in 2 s with a refused token`);
            }
            await page.unroute('**/v1/dashboard/cluster');
            await page.locator('#token-form button').click();  // saving (an empty token) resumes
            await until(
                'the cluster page again after saving a token',
                async () => (await page.locator('[data-testid="grid-0"]').count()) === 1 &&
                    (await page.locator('#error').isHidden()),
                10000);
        });
        await page.goto(`${base}/#/tree`);
        await until('the collaboration tree', async () => {
            const t =
                (await page.locator('[data-testid="tree"]').textContent({timeout: 1000})) || '';
            return [
                'heart_collab', 'heart_project', 'heart_expt', 'watched_run', 'queued_run'
            ].every((s) => t.includes(s));
        }, 15000);
        await shot('tree');
        await page.goto(`${base}/#/optimizations`);
        await until(
            'the optimizations page',
            async () => (await page.locator('h1').textContent({timeout: 1000})) === 'Optimizations',
            15000);
        await shot('optimizations');

        // 6. Static files: content types, cache headers, no traversal.
        const index = await fetch(`${base}/`);
        if (!index.headers.get('content-type').startsWith('text/html') ||
            index.headers.get('cache-control') !== 'no-cache') {
            fail(`/ answers ${index.headers.get('content-type')} with cache ${
                index.headers.get('cache-control')}`);
        }
        const js = (await index.text()).match(/\/assets\/[A-Za-z0-9._-]+\.js/)[0];
        const asset = await fetch(base + js);
        if (!asset.headers.get('content-type').startsWith('text/javascript') ||
            !asset.headers.get('cache-control').includes('immutable')) {
            fail(`${js} answers ${asset.headers.get('content-type')}, ${
                asset.headers.get('cache-control')}`);
        }
        // Raw targets (fetch would normalise the dots away before sending).
        for (const bad
                 of ['/assets/..%2f..%2fconfigs%2fworker.yaml', '/assets/%2e%2e',
                     '/assets/../../etc/passwd', '/assets/%2e%2e%2fsecret', '/assets/.hidden']) {
            const status = await new Promise((resolve, reject) => {
                const req =
                    http.get({host: '127.0.0.1', port: dport, path: bad, timeout: 10000}, (res) => {
                        res.resume();
                        resolve(res.statusCode);
                    });
                req.on('timeout', () => req.destroy(new Error(`GET ${bad} timed out`)));
                req.on('error', reject);
            });
            if (status !== 404 && status !== 400) {
                fail(`${bad} answered ${status}`);
            }
        }
        if (consoleErrors.length) {
            fail(`the page logged errors: ${consoleErrors.join(' | ')}`);
        }
        await context.close();
    } finally {
        await browser.close();
    }
}

// ctest's timeout (or ^C) must not leave the three processes behind.
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        console.error(`dashboard e2e: ${sig}: stopping`);
        for (const c of children) {
            c.kill('SIGKILL');
        }
        fs.rmSync(work, {recursive: true, force: true});
        process.exit(1);
    });
}

let code = 0;
try {
    await main();
    log('dashboard e2e: ok');
} catch (e) {
    console.error(`dashboard e2e: FAILED: ${e.stack || e.message}`);
    code = 1;
} finally {
    await stopAll();
    fs.rmSync(work, {recursive: true, force: true});
}
process.exit(code);
