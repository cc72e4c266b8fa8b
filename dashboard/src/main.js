// SPDX-License-Identifier: Apache-2.0
// The dashboard: a hash router over five pages, each re-rendered by polling the director (no page
// reloads). Pages: #/cluster, #/jobs, #/run/<job_id>, #/optimizations, #/tree.
import 'uplot/dist/uPlot.min.css';
import './style.css';

import uPlot from 'uplot';

import {api, set_token, token} from './api.js';

// Poll period: 1 s, or `?poll=<ms>` (200 to 60000) in the page's address.
const kPollMs = Math.min(
    60000, Math.max(200, Number(new URLSearchParams(window.location.search).get('poll')) || 1000));
const app = document.getElementById('app');
const errorBox = document.getElementById('error');
const actionBox = document.getElementById('action-error');

let timer = null;
let inflight = false;  // a poll is running: a second one would only repeat it
let again = false;     // asked for while a poll ran (after an action): poll again at once
let chart = null;
let chartHolder = null;  // the chart's element, kept across polls with its zoom and legend
let chartKey = '';       // its series: other series need a new chart
let chartData = '';      // its data as drawn: unchanged data is not drawn again
let generation = 0;  // bumps on navigation so a late answer never paints the wrong page
let failures = 0;    // polls failed in a row: each waits twice as long as the one before
let blocked = false;  // the director refused the token: no polling until one is saved
let settled = false;  // the page shows a finished job: it changes rarely, so poll less
let modelShown = null;  // {url, text}: the model record opened on the run page
const optimizationsDone = new Map();  // finished optimize jobs: job_id -> their summary
const kTerminal = new Set(['succeeded', 'failed', 'cancelled']);
const kFinishedShown = 200;  // finished jobs on the jobs page: the latest ones

// ---- small DOM helpers -----------------------------------------------------------------------

// Handlers go through a property, so morph() can hand a kept element its new handler.
function listen(el, type, handler) {
    if (el[`__on_${type}`] === undefined) {
        el.addEventListener(type, (ev) => el[`__on_${type}`](ev));
    }
    el[`__on_${type}`] = handler;
}

function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) {
            continue;
        }
        if (k === 'class') {
            el.className = v;
        } else if (k.startsWith('on')) {
            listen(el, k.slice(2), v);
        } else {
            el.setAttribute(k, v === true ? '' : v);
        }
    }
    for (const c of children.flat()) {
        if (c === undefined || c === null || c === false) {
            continue;
        }
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
}

// Elements a poll may keep when the new page has the same one at the same place: same tag and
// same identity (a job's row, a test id). uPlot charts are rebuilt whole.
function same_node(a, b) {
    if (a === b) {
        return true;
    }
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) {
        return false;
    }
    if (a.nodeType !== Node.ELEMENT_NODE) {
        return true;
    }
    return a.getAttribute('data-job') === b.getAttribute('data-job') &&
        a.getAttribute('data-testid') === b.getAttribute('data-testid') &&
        !a.classList.contains('chart');
}

// Brings `parent`'s children to `next` changing only what differs. Replacing the whole page at
// each poll lost clicks: a button replaced between mouse down and up gets no click (a cancel
// clicked during a repaint did nothing), and it dropped text selections and focus.
function morph(parent, next) {
    // A job's row is found by its job wherever it was, so reordered rows move instead of
    // being rebuilt.
    const key = (node) => (node.nodeType === Node.ELEMENT_NODE ? node.getAttribute('data-job') : null);
    const keyed = new Map();
    for (const o of parent.childNodes) {
        if (key(o) !== null) {
            keyed.set(key(o), o);
        }
    }
    let cursor = parent.firstChild;
    next.forEach((n, i) => {
        if (n === cursor) {  // the same element, kept whole (the chart)
            cursor = cursor.nextSibling;
            return;
        }
        if (n.parentNode === parent) {  // the same element, further on: moved here
            parent.insertBefore(n, cursor);
            return;
        }
        const k = key(n);
        if (k !== null && keyed.has(k)) {
            const o = keyed.get(k);
            keyed.delete(k);
            if (same_node(o, n)) {
                if (o === cursor) {
                    cursor = cursor.nextSibling;
                } else {
                    parent.insertBefore(o, cursor);
                }
                patch(o, n);
                return;
            }
        }
        if (cursor !== null && key(cursor) === null && k === null) {
            // Unkeyed nodes match by place. One that differs is new when the node at the cursor
            // matches what comes after it, gone when the node after the cursor matches it, and
            // replaced otherwise: either way the cursor moves on, so the rest still matches.
            if (same_node(cursor, n)) {
                const o = cursor;
                cursor = cursor.nextSibling;
                patch(o, n);
                return;
            }
            if (i + 1 < next.length && same_node(cursor, next[i + 1])) {
                parent.insertBefore(n, cursor);
                return;
            }
            const after = cursor.nextSibling;
            if (after !== null && key(after) === null && same_node(after, n)) {
                parent.removeChild(cursor);
                cursor = after.nextSibling;
                patch(after, n);
                return;
            }
            const gone = cursor;
            cursor = cursor.nextSibling;
            parent.replaceChild(n, gone);
            return;
        }
        parent.insertBefore(n, cursor);
    });
    while (cursor !== null) {  // what the new page no longer has
        const after = cursor.nextSibling;
        parent.removeChild(cursor);
        cursor = after;
    }
}

// Makes kept node `o` look like `n`: text, attributes, handlers, then children.
function patch(o, n) {
    if (o.nodeType !== Node.ELEMENT_NODE) {
        if (o.nodeValue !== n.nodeValue) {
            o.nodeValue = n.nodeValue;
        }
        return;
    }
    for (const a of Array.from(o.attributes)) {
        if (!n.hasAttribute(a.name)) {
            o.removeAttribute(a.name);
        }
    }
    for (const a of Array.from(n.attributes)) {
        if (o.getAttribute(a.name) !== a.value) {
            o.setAttribute(a.name, a.value);
        }
    }
    for (const key of Object.keys(o)) {
        if (key.startsWith('__on_') && !(key in n)) {
            o[key] = () => {};  // the new page has no such handler here
        }
    }
    for (const key of Object.keys(n)) {
        if (key.startsWith('__on_')) {
            listen(o, key.slice(5), n[key]);
        }
    }
    morph(o, Array.from(n.childNodes));
}

function fmt(v, digits = 4) {
    if (typeof v === 'number') {
        return Number.isInteger(v) ? String(v) : v.toFixed(digits);
    }
    if (v === undefined || v === null) {
        return '';
    }
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function table(headers, rows, attrs = {}) {
    return h(
        'table', attrs, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
        h('tbody', {}, rows));
}

function show_error(message) {
    errorBox.hidden = !message;
    errorBox.textContent = message || '';
}

// What an action (a cancel, opening a record) answered stays until dismissed or the next action:
// polls clear only their own errors.
function show_action_error(message) {
    actionBox.hidden = !message;
    document.getElementById('action-error-text').textContent = message || '';
}
document.getElementById('action-error-close').addEventListener('click', () => show_action_error(''));

function job_label(job) {
    const f = job.filters || [];
    return f.length ? f.join(' / ') : job.job_id;
}

// ---- pages -----------------------------------------------------------------------------------

async function page_cluster() {
    const data = await api.cluster();
    const body = [h('h1', {}, 'Cluster')];
    const counts = data.jobs || {};
    body.push(
        h('p', {class: 'counts', 'data-testid': 'job-counts'},
          Object.entries(counts).map(
              ([k, v]) => h('span', {class: `badge state-${k}`}, `${k}: ${v}`))));
    if (!data.grids || data.grids.length === 0) {
        body.push(h('p', {class: 'empty'}, 'No grid yet: register participants to a project.'));
    }
    for (const g of data.grids || []) {
        const ttps = g.ttps.length ?
            g.ttps.map(
                (t) => h(
                    'li', {}, h('b', {}, t.ttp_id), ` last job ${t.last_job} (${t.last_state})`)) :
            [h('li', {class: 'empty'}, 'no TTP has taken a job of this grid yet')];
        body.push(h(
            'section', {class: 'grid-card', 'data-testid': `grid-${g.grid}`},
            h('h2', {}, `Grid ${g.grid}`), h('h3', {}, 'TTPs'),
            g.ttps_connected !== undefined ?
                h('p', {'data-testid': `ttps-connected-${g.grid}`},
                  `connected to the grid's job queue: ${g.ttps_connected}`) :
                null,
            h('ul', {}, ttps), h('h3', {}, 'Workers'),
            table(
                ['participant', 'address', 'projects', 'health', 'latency'],
                g.workers.map(
                    (w) =>
                        h('tr', {'data-testid': `worker-${w.participant_id}`},
                          h('td', {}, w.participant_id), h('td', {}, `${w.host}:${w.port}`),
                          h('td', {}, (w.projects || []).join(', ')),
                          h('td', {class: `health health-${w.health}`, title: w.detail || ''},
                            w.health),
                          h('td', {}, w.latency_ms !== undefined ? `${w.latency_ms} ms` : ''))))));
    }
    return body;
}

function progress_cell(job) {
    const p = job.progress || {};
    if (job.state === 'running' && p.rounds) {
        const pct = Math.min(100, Math.round((100 * (p.round || 0)) / p.rounds));
        return h(
            'td', {class: 'progress-cell'},
            h('div', {class: 'bar'}, h('div', {class: 'fill', style: `width:${pct}%`})),
            h('span', {class: 'round', 'data-testid': `round-${job.job_id}`},
              `round ${p.round} / ${p.rounds}`),
            p.train_loss !== undefined ? h('span', {class: 'loss'}, ` loss ${fmt(p.train_loss)}`) :
                                         null);
    }
    if (job.state === 'succeeded' && job.process === 'train') {
        return h('td', {}, 'done');
    }
    return h('td', {}, '');
}

async function cancel(job) {
    if (!window.confirm(`Cancel job ${job.job_id} (${job.process} ${job_label(job)})?`)) {
        return;
    }
    try {
        await api.cancel(job.job_id);
        show_action_error('');
    } catch (e) {
        show_action_error(`Cancel of job ${job.job_id}: ${
            e.status === 403 ? `${e.message} (cancelling needs a token with the admin scope)` :
                               e.message}`);
    }
    refresh();
}

async function page_jobs() {
    const jobs = await api.jobs(`?finished=${kFinishedShown}`);
    const finished = jobs.filter((j) => kTerminal.has(j.state)).length;
    const groups = [
        ['queued', 'Queued', (j) => j.state === 'queued' || j.state === 'submitting'],
        ['running', 'Running', (j) => j.state === 'running'],
        ['finished', 'Finished', (j) => j.state === 'succeeded'],
        ['failed', 'Failed or cancelled', (j) => j.state === 'failed' || j.state === 'cancelled'],
    ];
    const body = [h('h1', {}, 'Jobs')];
    if (finished >= kFinishedShown) {
        body.push(h('p', {class: 'note', 'data-testid': 'jobs-finished-limit'},
                    `Finished, failed and cancelled: the latest ${kFinishedShown} (GET /v1/jobs lists every job).`));
    }
    for (const [id, title, pick] of groups) {
        const list = jobs.filter(pick);
        body.push(
            h('section', {'data-testid': `jobs-${id}`}, h('h2', {}, `${title} (${list.length})`),
              list.length === 0 ?
                  h('p', {class: 'empty'}, 'none') :
                  table(
                      ['job', 'process', 'run', 'grid', 'state', 'progress', 'reason', ''],
                      list.map(
                          (j) =>
                              h('tr', {'data-job': j.job_id, class: `state-${j.state}`},
                                h('td', {},
                                  // Ids start with their creation time: the random tail
                                  // tells jobs apart.
                                  h('a', {
                                      href: `#/run/${encodeURIComponent(j.job_id)}`,
                                      title: j.job_id,
                                      class: 'job-id'
                                  },
                                    `\u2026${j.job_id.slice(-8)}`)),
                                h('td', {}, j.process), h('td', {}, job_label(j)),
                                h('td', {}, fmt(j.grid)), h('td', {class: 'state'}, j.state),
                                progress_cell(j), h('td', {class: 'reason'}, j.reason || ''),
                                h('td', {},
                                  (j.state === 'queued' || j.state === 'running' ||
                                   j.state === 'submitting') ?
                                      h('button', {class: 'cancel', onclick: () => cancel(j)},
                                        'Cancel') :
                                      ''))))));
    }
    return body;
}

function series_of(obj) {
    return Object.entries(obj || {})
        .map(([k, v]) => [Number(k), v])
        .filter(([, v]) => typeof v === 'number');
}

function loss_chart(history) {
    const lines = [['global train', history.train], ['global evaluate', history.evaluate]];
    for (const [pid, s] of Object.entries(history.local || {})) {
        lines.push([pid, s]);
    }
    const rounds = new Set();
    for (const [, s] of lines) {
        for (const [r] of series_of(s)) {
            rounds.add(r);
        }
    }
    const xs = [...rounds].sort((a, b) => a - b);
    if (xs.length === 0) {
        return null;
    }
    const data = [xs.map((r) => r + 1)];
    for (const [, s] of lines) {
        data.push(xs.map((r) => (s && typeof s[String(r)] === 'number' ? s[String(r)] : null)));
    }
    const colors = ['#1f6feb', '#d73a49', '#2da44e', '#bf8700', '#8250df', '#57606a'];
    const opts = {
        title: 'Loss per round',
        width: Math.min(900, Math.max(320, app.clientWidth - 40)),
        height: 300,
        scales: {x: {time: false}},
        axes:
            [{label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]}, {label: 'loss'}],
        series: [{label: 'round'}].concat(lines.map(([name], i) => ({
                                                        label: name,
                                                        stroke: colors[i % colors.length],
                                                        width: i < 2 ? 2.5 : 1.5,
                                                        dash: i < 2 ? undefined : [5, 4],
                                                        points: {show: true},
                                                    }))),
    };
    // The same series: the chart stays (a zoom or a series hidden in the legend stays with it)
    // and only new data is drawn.
    const key = JSON.stringify(lines.map(([name]) => name));
    const text = JSON.stringify(data);
    if (chart && chartHolder && chartHolder.isConnected && key === chartKey) {
        if (text !== chartData) {
            chart.setData(data);
            chartData = text;
            chartHolder.setAttribute('data-rounds', String(xs.length));
        }
        return chartHolder;
    }
    const holder =
        h('div', {class: 'chart', 'data-testid': 'loss-chart', 'data-rounds': String(xs.length)});
    drop_chart();
    chart = new uPlot(opts, data, holder);
    chartHolder = holder;
    chartKey = key;
    chartData = text;
    return holder;
}

function drop_chart() {
    if (chart) {
        chart.destroy();
    }
    chart = null;
    chartHolder = null;
    chartKey = '';
    chartData = '';
}

// The model record is a REST route behind the token: a plain link opens it without the
// Authorization header (401 wherever tokens are set), so the page fetches it and shows it.
async function show_model(url) {
    try {
        const record = await api.get(url);
        modelShown = {url, text: JSON.stringify(record, null, 2)};
        show_action_error('');
    } catch (e) {
        show_action_error(`Model record: ${e.message}`);
    }
    refresh();
}

/// A statistic: per-class lists show their mean (the classes in the tooltip).
function stat_cell(v) {
    if (Array.isArray(v) && v.length && v.every((x) => typeof x === 'number')) {
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        return h(
            'td', {class: 'per-class', title: `per class: ${v.map((x) => fmt(x)).join(', ')}`},
            fmt(mean));
    }
    return h('td', {}, fmt(v));
}

function kv_table(obj, testid) {
    const rows = Object.entries(obj || {}).filter(
        ([, v]) => v !== null && v !== '' && typeof v !== 'object');
    return table(
        ['name', 'value'], rows.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, fmt(v)))),
        {'data-testid': testid});
}

async function page_run(jobId) {
    const d = await api.run(jobId);
    const job = d.job;
    settled = kTerminal.has(job.state);
    const p = job.progress || {};
    const body = [
        h('h1', {}, `Run ${job_label(job)}`),
        h('p', {class: 'meta'},
          h('span', {class: `badge state-${job.state}`, 'data-testid': 'run-state'}, job.state),
          ' ', `${job.process} job ${job.job_id}, grid ${job.grid}`,
          p.rounds ? h('span', {'data-testid': 'run-round'}, `, round ${p.round} / ${p.rounds}`) :
                     null,
          job.reason ? h('span', {class: 'reason'}, ` (${job.reason})`) : null)
    ];
    body.push(h('h2', {}, 'Loss'));
    const c = loss_chart(d.history || {});
    body.push(
        c || h('p', {class: 'empty', 'data-testid': 'loss-chart-empty'}, 'no round finished yet'));
    const sources = {
        outputs: 'the finished job\'s loss history',
        checkpoint: 'every round so far, from the latest checkpoint',
        live: 'global losses of the rounds the director saw while the job ran',
    };
    body.push(
        h('p', {class: 'note', 'data-testid': 'history-source'}, sources[d.history_source] || ''));

    body.push(h('h2', {}, 'Validation metrics'));
    if (d.validations && d.validations.length) {
        const stats = new Set();
        for (const v of d.validations) {
            Object.keys(v.statistics || {}).forEach((k) => stats.add(k));
        }
        const names = [...stats];
        const rows = d.validations.map(
            (v) =>
                h('tr', {}, h('td', {}, v.participant_id), h('td', {}, v.meta),
                  names.map((n) => stat_cell((v.statistics || {})[n]))));
        body.push(
            table(['participant', 'split'].concat(names), rows, {'data-testid': 'metrics'}),
            h('p', {class: 'note'},
              'Per-class statistics show their mean over the classes (hover for each class).'));
    } else {
        body.push(h('p', {class: 'empty', 'data-testid': 'metrics-empty'}, 'no validation yet'));
    }
    if (p.metrics || (d.history && d.history.metrics && Object.keys(d.history.metrics).length)) {
        body.push(
            h('h3', {}, 'Strategy metrics (last round)'),
            kv_table(p.metrics || {}, 'strategy-metrics'));
    }

    body.push(h('h2', {}, 'Hyper-parameters'), kv_table(d.hyperparameters, 'hyperparameters'));

    body.push(h('h2', {}, 'Outputs'));
    const links = [];
    if (typeof d.model_url === 'string' && d.model_url.startsWith('/')) {
        links.push(
            h('li', {},
              h('a', {
                  href: d.model_url,
                  'data-testid': 'model-link',
                  onclick: (ev) => {
                      ev.preventDefault();
                      show_model(d.model_url);
                  }
              },
                'model record'),
              d.model_path ? ` (${d.model_path})` : ''));
    }
    if (d.mlflow) {
        const m = d.mlflow;
        const label = `MLflow run ${m.run_id || m.run_name} in experiment ${m.experiment_name}`;
        links.push(
            h('li', {},
              m.url ? h('a', {href: m.url, target: '_blank', 'data-testid': 'mlflow-link'}, label) :
                      h('span', {'data-testid': 'mlflow-link'}, label),
              m.store ? ` (store ${m.store})` : ''));
    }
    body.push(links.length ? h('ul', {}, links) : h('p', {class: 'empty'}, 'no outputs yet'));
    if (modelShown && modelShown.url === d.model_url) {
        body.push(h('pre', {class: 'record', 'data-testid': 'model-record'}, modelShown.text));
    }
    return body;
}

async function page_optimizations() {
    const jobs = await api.jobs('?process=optimize');
    const body = [h('h1', {}, 'Optimizations')];
    if (jobs.length === 0) {
        body.push(h(
            'p', {class: 'empty', 'data-testid': 'optimizations-empty'},
            'No hyper-parameter search yet (POST .../optimizations, optimize module active).'));
    }
    // Every search's details at once; a finished one's never change, so they are kept.
    const details = await Promise.all(jobs.map(async (j) => {
        if (optimizationsDone.has(j.job_id)) {
            return optimizationsDone.get(j.job_id);
        }
        const d = await api.run(j.job_id);
        const o = d.optimization || {};
        if (kTerminal.has(d.job.state)) {
            optimizationsDone.set(j.job_id, o);
        }
        return o;
    }));
    for (const [index, j] of jobs.entries()) {
        const o = details[index];
        const max = o.optimize_mode === 'max';
        const scored = (t) =>
            (typeof t.score === 'number' ? t.score : (max ? -Infinity : Infinity));
        const trials = (o.trials || [])
                           .slice()
                           .sort((a, b) => (max ? scored(b) - scored(a) : scored(a) - scored(b)));
        const best = o.best;
        body.push(h(
            'section', {'data-testid': `optimization-${j.job_id}`},
            h('h2', {}, `${job_label(j)} (${j.state})`),
            h('p', {}, `metric ${o.metric || '?'} (${max ? 'higher' : 'lower'} is better), `,
              `${o.finished ?? 0} of ${o.total ?? trials.length} trials done`,
              o.failed ? `, ${o.failed} failed` : ''),
            best ? h('p', {class: 'best', 'data-testid': 'best-trial'},
                     `best: ${best.run_id} score ${fmt(best.score)} `,
                     h('code', {}, JSON.stringify(best.hyperparameters || {}))) :
                   null,
            table(
                ['trial', 'score', 'state', 'hyper-parameters'],
                trials.map(
                    (t) =>
                        h('tr', {class: best && t.run_id === best.run_id ? 'best-row' : ''},
                          h('td', {}, t.run_id), h('td', {}, fmt(t.score)),
                          h('td', {}, t.state || ''),
                          h('td', {}, h('code', {}, JSON.stringify(t.hyperparameters || {}))))))));
    }
    return body;
}

async function page_tree() {
    const tree = await api.tree();
    const body = [h('h1', {}, 'Collaborations')];
    if (tree.length === 0) {
        body.push(h('p', {class: 'empty'}, 'No collaboration yet.'));
    }
    const runLi = (r) =>
        h('li', {class: 'run'}, h('b', {}, r.run_id), r.algorithm ? ` ${r.algorithm}` : '',
          r.rounds ? `, ${r.rounds} rounds` : '',
          (r.jobs || [])
              .map(
                  (j) =>
                      h('span', {}, ' ',
                        h('a', {
                            href: `#/run/${encodeURIComponent(j.job_id)}`,
                            class: `badge state-${j.state}`
                        },
                          `${j.process}: ${j.state}`))));
    body.push(h(
        'ul', {class: 'tree', 'data-testid': 'tree'},
        tree.map(
            (c) =>
                h('li', {}, h('b', {}, c.collab_id), ' (collaboration)',
                  h('ul', {},
                    (c.projects || [])
                        .map(
                            (p) =>
                                h('li', {}, h('b', {}, p.project_id),
                                  ` (project, ${p.action || 'classify'}; participants: `,
                                  (p.participants || []).join(', ') || 'none', ')',
                                  h('ul', {},
                                    (p.experiments || [])
                                        .map(
                                            (e) =>
                                                h('li', {}, h('b', {}, e.expt_id), ' (experiment)',
                                                  h('ul', {}, (e.runs || []).map(runLi))))))))))));
    return body;
}

// ---- router and polling ----------------------------------------------------------------------

function route() {
    const hash = window.location.hash.replace(/^#\/?/, '');
    const [name, ...rest] = hash.split('/');
    switch (name) {
        case 'jobs':
            return ['jobs', page_jobs];
        case 'run':
            return ['jobs', () => page_run(decodeURIComponent(rest.join('/')))];
        case 'optimizations':
            return ['optimizations', page_optimizations];
        case 'tree':
            return ['tree', page_tree];
        default:
            return ['cluster', page_cluster];
    }
}

// The wait before the next poll: the page's period; longer for a finished job's page (it changes
// only when, say, a validation lands); doubling after each failure in a row, up to 30 s.
function next_delay() {
    if (failures > 0) {
        return Math.min(30000, kPollMs * 2 ** Math.min(failures, 8));
    }
    return settled ? Math.min(60000, kPollMs * 10) : kPollMs;
}

async function refresh() {
    const mine = generation;
    clearTimeout(timer);
    timer = null;
    if (inflight) {
        again = true;  // one poll at a time; the running one is followed by another at once
        return;
    }
    if (document.hidden) {
        return;  // a hidden tab does not poll (visibilitychange resumes)
    }
    inflight = true;
    again = false;
    settled = false;
    const [nav, page] = route();
    document.querySelectorAll('nav a').forEach(
        (a) => a.classList.toggle('active', a.dataset.nav === nav));
    const live = document.getElementById('live');
    try {
        const content = await page();
        inflight = false;
        if (mine !== generation) {
            refresh();  // the page changed while this one loaded
            return;
        }
        morph(app, content.flat()
                       .filter((c) => c !== undefined && c !== null && c !== false)
                       .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
        show_error('');
        failures = 0;
        live.classList.remove('stale');
        live.dataset.updated = new Date().toISOString();
    } catch (e) {
        inflight = false;
        if (mine !== generation) {
            refresh();
            return;
        }
        failures += 1;
        live.classList.add('stale');
        if (e.status === 401 || e.status === 403) {
            // The same token fails the same way: wait for another one.
            blocked = true;
            show_error(`${e.message} (enter an API token above; polling paused)`);
        } else {
            show_error(e.message);
        }
    }
    if (mine === generation && !blocked && !document.hidden) {
        // What an action changed shows now, not a (finished job's) long period later.
        timer = setTimeout(refresh, again ? 0 : next_delay());
        again = false;
    }
}

document.addEventListener('visibilitychange', () => {
    if (!document.hidden && timer === null && !blocked) {
        refresh();
    }
});

window.addEventListener('hashchange', () => {
    generation += 1;
    drop_chart();
    modelShown = null;
    failures = 0;
    blocked = false;
    app.replaceChildren(h('p', {class: 'empty'}, 'loading...'));
    refresh();
});

const tokenInput = document.getElementById('token');
tokenInput.value = token();
document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    set_token(tokenInput.value.trim());
    failures = 0;
    blocked = false;
    refresh();
});

refresh();
