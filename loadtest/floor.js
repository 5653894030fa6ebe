// floor: the HTTP floor (examples/http_floor.rs) under the executor the
// waiting-room spike uses — constant arrival rate, same VU pool — first
// GET /static (a fixed JSON), then POST /evalsha (one EVALSHA). Reports what
// each sustained and how many arrivals k6 dropped.
//   FLOOR_URL (http://127.0.0.1:18090), FLOOR_RATE (requests/s, 5000), FLOOR_SECONDS (6), FLOOR_LABEL
import { Counter, Trend } from 'k6/metrics';
import http from 'k6/http';
import { TREND_STATS, perSecond } from './lib/common.js';

const URL = __ENV.FLOOR_URL || 'http://127.0.0.1:18090';
const RATE = Number(__ENV.FLOOR_RATE || 5000);
const SECONDS = Number(__ENV.FLOOR_SECONDS || 6);
const answered = { static: new Counter('static_answered'), evalsha: new Counter('evalsha_answered') };
const at = { static: new Trend('static_at_ms'), evalsha: new Trend('evalsha_at_ms') };
const ms = { static: new Trend('static_ms', true), evalsha: new Trend('evalsha_ms', true) };

const spike = (exec, start) => ({
  executor: 'constant-arrival-rate', exec, rate: RATE, timeUnit: '1s', duration: `${SECONDS}s`,
  startTime: `${start}s`, preAllocatedVUs: 300, maxVUs: 2000,
});
export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: { static: spike('fixed', 0), evalsha: spike('script', SECONDS + 2) },
};

function record(kind, r) {
  if (r.status !== 200) return;
  answered[kind].add(1);
  at[kind].add(Date.now());
  ms[kind].add(r.timings.duration);
}
export function fixed() { record('static', http.get(`${URL}/static`)); }
export function script() { record('evalsha', http.post(`${URL}/evalsha`)); }

export function handleSummary(data) {
  const m = data.metrics;
  const rate = (kind) => perSecond(m, m[`${kind}_answered`] ? m[`${kind}_answered`].values.count : 0, `${kind}_at_ms`);
  const out = {
    offered_per_second: RATE,
    static_per_second: rate('static'),
    evalsha_per_second: rate('evalsha'),
    static_p99_ms: m.static_ms ? m.static_ms.values['p(99)'] : null,
    evalsha_p99_ms: m.evalsha_ms ? m.evalsha_ms.values['p(99)'] : null,
    dropped: m.dropped_iterations ? m.dropped_iterations.values.count : 0,
  };
  const file = `${__ENV.SUMMARY_DIR || '.'}/floor-${__ENV.FLOOR_LABEL || RATE}.json`;
  return { stdout: `\nfloor: ${JSON.stringify(out)}\n`, [file]: JSON.stringify(out, null, 2) };
}
