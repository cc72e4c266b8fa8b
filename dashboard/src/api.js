// SPDX-License-Identifier: Apache-2.0
// The director's REST API as the pages use it: same origin, JSON envelopes, an optional bearer
// token kept in localStorage (sent only when set).

const kTokenKey = 'synergos.token';

export function token() {
    return localStorage.getItem(kTokenKey) || '';
}

export function set_token(value) {
    if (value) {
        localStorage.setItem(kTokenKey, value);
    } else {
        localStorage.removeItem(kTokenKey);
    }
}

export class ApiError extends Error {
    constructor(status, message, field) {
        super(message);
        this.status = status;
        this.field = field;
    }
}

async function call(method, path, body) {
    const headers = {Accept: 'application/json'};
    const t = token();
    if (t) {
        headers.Authorization = `Bearer ${t}`;
    }
    const init = {method, headers, cache: 'no-store'};
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    // Every request has a deadline: a hung director must not freeze the page's polling.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 15000);
    init.signal = ctl.signal;
    let resp;
    try {
        resp = await fetch(path, init);
    } catch (e) {
        throw new ApiError(
            0, `${method} ${path}: ${e.name === 'AbortError' ? 'timed out' : e.message}`);
    } finally {
        clearTimeout(timer);
    }
    let json = null;
    try {
        json = await resp.json();
    } catch {
        json = null;
    }
    if (!resp.ok) {
        const msg = json && json.message ? json.message : `HTTP ${resp.status}`;
        throw new ApiError(resp.status, `${method} ${path}: ${msg}`, json && json.field);
    }
    return json && 'data' in json ? json.data : json;
}

export const api = {
    cluster: () => call('GET', '/v1/dashboard/cluster'),
    // Every unfinished job and the latest `finished` finished ones (all when not given).
    jobs: (query = '') => call('GET', `/v1/dashboard/jobs${query}`),
    run: (jobId) => call('GET', `/v1/dashboard/jobs/${encodeURIComponent(jobId)}`),
    tree: () => call('GET', '/v1/dashboard/tree'),
    get: (path) => call('GET', path),
    cancel: (jobId) => call('POST', `/v1/jobs/${encodeURIComponent(jobId)}/cancel`),
};
