// Shared helpers for the k6 scenarios. Every scenario reads BASE_URL (default
// http://127.0.0.1:8080) and ADMIN_TOKEN, so it runs against any deployment.
import http from 'k6/http';
import { check, fail } from 'k6';

export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
/** Percentiles every scenario reports (k6's default summary has no p(99)). */
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(50)', 'p(90)', 'p(95)', 'p(99)'];
export const ADMIN = __ENV.ADMIN_TOKEN || 'dev-admin-token';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

export function post(path, body, token, extra = {}) {
  const headers = Object.assign({}, JSON_HEADERS, extra.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  return http.post(`${BASE}${path}`, JSON.stringify(body), { headers, tags: { name: extra.name || path } });
}

export function get(path, token, name) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return http.get(`${BASE}${path}`, { headers, tags: { name: name || path } });
}

/** Signs up `n` fans in batches; returns their accounts: `{ userId, access }` (access token). */
export function signUpMany(n, prefix = 'k6') {
  const ids = [];
  for (let start = 0; start < n; start += 200) {
    const reqs = [];
    for (let i = start; i < Math.min(n, start + 200); i++) {
      reqs.push(['POST', `${BASE}/v1/users`, JSON.stringify({ name: `${prefix}-${i}` }), { headers: JSON_HEADERS, tags: { name: 'setup' } }]);
    }
    for (const r of http.batch(reqs)) {
      if (r.status === 429) {
        fail(`sign-up refused (429): every fan signs up from this one address; start the stack under test with SIGNUP_PER_MINUTE_PER_ADDRESS=0 (${r.body})`);
      }
      if (r.status !== 201) fail(`sign-up failed: ${r.status} ${r.body}`);
      ids.push({ userId: r.json('userId'), access: r.json('accessToken') });
    }
  }
  return ids;
}

/** Issues a queue token for each account (its access token, no body) in batches; returns the token objects. */
export function issueMany(accounts) {
  const out = [];
  for (let start = 0; start < accounts.length; start += 200) {
    const reqs = accounts.slice(start, start + 200).map((a) => ['POST', `${BASE}/v1/queue/tokens`, null, { headers: { Authorization: `Bearer ${a.access}` }, tags: { name: 'setup' } }]);
    const answers = http.batch(reqs);
    answers.forEach((r, k) => {
      if (r.status !== 201 && r.status !== 200) fail(`token failed: ${r.status} ${r.body}`);
      out.push({ token: r.json('token'), status: r.json('status'), access: accounts[start + k].access });
    });
  }
  return out;
}

/** Asks for a queue token with an access token (no body); returns the response. */
export function issue(access, name = 'issue') {
  return http.post(`${BASE}/v1/queue/tokens`, null, { headers: { Authorization: `Bearer ${access}` }, tags: { name } });
}

/**
 * Long-polls the job until it is final; returns the job JSON (or null after ~60 s).
 * `token` is the owner's access token (or their queue token, while it lives).
 */
export function waitJob(jobId, token, name = 'job') {
  for (let i = 0; i < 6; i++) {
    const r = get(`/v1/jobs/${jobId}?waitSeconds=10`, token, name);
    if (r.status !== 200) return null;
    const job = r.json();
    if (job.status === 'SUCCEEDED' || job.status === 'FAILED') return job;
  }
  return null;
}

/**
 * `waitJob` for load loops: reads only the answer's `status` field (no
 * JavaScript object built per answer); returns the final status, or null.
 */
export function waitStatus(jobId, token, name = 'job') {
  for (let i = 0; i < 6; i++) {
    const r = get(`/v1/jobs/${jobId}?waitSeconds=10`, token, name);
    if (r.status !== 200) return null;
    const status = r.json('status');
    if (status === 'SUCCEEDED' || status === 'FAILED') return status;
  }
  return null;
}

/** Creates a concert (admin) with `dates` open schedules priced `price`; returns the JSON. */
export function createConcert(title, dates, price) {
  const now = Date.now();
  const day = 86400000;
  const schedules = [];
  for (let i = 0; i < dates; i++) {
    schedules.push({
      startsAt: new Date(now + (10 + i) * day).toISOString(),
      bookingOpensAt: new Date(now - 3600000).toISOString(),
      bookingClosesAt: new Date(now + 9 * day).toISOString(),
      seatPrice: price,
    });
  }
  const r = post('/v1/admin/concerts', { title, schedules }, ADMIN, { name: 'setup' });
  check(r, { 'concert created': (x) => x.status === 201 }) || fail(`concert: ${r.status} ${r.body}`);
  return r.json();
}

/** A compact end-of-test summary: the metrics that matter, as text and JSON. */
export function summarize(data, name, extra = {}) {
  const m = data.metrics;
  const pick = (metric, stat) => (m[metric] && m[metric].values[stat] !== undefined ? m[metric].values[stat] : null);
  const out = Object.assign({
    scenario: name,
    http_reqs: pick('http_reqs', 'count'),
    http_rps: pick('http_reqs', 'rate'),
    failed_rate: pick('http_req_failed', 'rate'),
    thresholds_ok: Object.values(m).every((x) => !x.thresholds || Object.values(x.thresholds).every((t) => t.ok)),
  }, extra(m));
  const file = __ENV.SUMMARY_DIR ? `${__ENV.SUMMARY_DIR}/${name}.json` : `${name}-summary.json`;
  return { stdout: `\n${name}: ${JSON.stringify(out, null, 2)}\n`, [file]: JSON.stringify(out, null, 2) };
}

/**
 * `count` per second over a scenario's own window: from the earliest value of
 * the `from` timestamp trend to the latest of `to` — what the stack sustained,
 * not k6's rate over the whole run (which includes the setup).
 */
export function perSecond(m, count, from, to = from) {
  const windowMs = m[from] && m[to] ? m[to].values.max - m[from].values.min : 0;
  return windowMs > 0 ? (count * 1000) / windowMs : 0;
}

export function trend(m, metric, stats = ['p(50)', 'p(95)', 'p(99)', 'max']) {
  if (!m[metric]) return null;
  const o = {};
  for (const s of stats) o[s] = m[metric].values[s];
  return o;
}
