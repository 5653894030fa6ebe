// chaos: the steady load `loadtest/chaos` runs while it injects faults. Whole
// fan journeys (sign up, recharge, get in line, reserve, pay) spread over
// every api in BASE_URLS, behaving as the README tells real clients to: a
// POST refused with a 5xx (or a dropped connection) is retried after
// Retry-After with the SAME Idempotency-Key, on the next api. Every 202 is
// logged as `ACCEPTED <ms> <jobId> <kind>` and every 5xx / dropped connection
// as `ERR <ms> <status> <step>`, for the runner to check and count.
//   BASE_URLS (comma-separated), CHAOS_VUS (16), CHAOS_DURATION (200s), CHAOS_DATES (200 dates × 50 seats)
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { createConcert, TREND_STATS } from './lib/common.js';

const BASES = (__ENV.BASE_URLS || 'http://127.0.0.1:8080').split(',');
const accepted = new Counter('accepted_jobs');
const refused = new Counter('refused_5xx');
const journeys = new Counter('journeys_completed');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: { fans: { executor: 'constant-vus', vus: Number(__ENV.CHAOS_VUS || 16), duration: __ENV.CHAOS_DURATION || '200s' } },
  setupTimeout: '2m',
};

export function setup() {
  // Enough seats that the run never sells out (a sold-out run is all fast failures).
  const schedules = [];
  for (let c = 0; c < Math.ceil(Number(__ENV.CHAOS_DATES || 200) / 40); c++) {
    schedules.push(...createConcert(`chaos-${c}`, 40, 10000).schedules.map((s) => s.scheduleId));
  }
  return { schedules };
}

/** One request with retries on 5xx and dropped connections, rotating apis. */
function call(method, path, body, token, step, key) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers['Idempotency-Key'] = key;
  for (let attempt = 0; attempt < 120; attempt++) {
    const base = BASES[(__VU + attempt) % BASES.length];
    const r = http.request(method, `${base}${path}`, body === null ? null : JSON.stringify(body), {
      headers, tags: { name: step }, timeout: '20s',
    });
    if (r.status !== 0 && r.status < 500) {
      if (r.status === 202) {
        accepted.add(1);
        console.log(`ACCEPTED ${Date.now()} ${r.json('jobId')} ${step}`);
      }
      return r;
    }
    refused.add(1);
    console.log(`ERR ${Date.now()} ${r.status} ${step}`);
    sleep(Number(r.headers['Retry-After'] || 1));
  }
  return null;
}

/** Long-polls a job to its end (bounded); null if it is not final in ~2 min. */
function settle(jobId, access) {
  for (let i = 0; i < 12; i++) {
    const r = call('GET', `/v1/jobs/${jobId}?waitSeconds=10`, null, access, 'job');
    if (!r || r.status !== 200) return null;
    const job = r.json();
    if (job.status === 'SUCCEEDED' || job.status === 'FAILED') return job;
  }
  return null;
}

export default function (data) {
  const signup = call('POST', '/v1/users', { name: `chaos-${__VU}-${__ITER}` }, null, 'sign-up');
  if (!signup || signup.status !== 201) return;
  const user = signup.json('userId');
  const access = signup.json('accessToken');
  const topup = call('POST', `/v1/users/${user}/balance/recharges`, { amount: 50000 }, access, 'recharge', `topup-${user}`);
  if (!topup || topup.status !== 202 || !settle(topup.json('jobId'), access)) return;
  let ticket = call('POST', '/v1/queue/tokens', null, access, 'queue');
  if (!ticket || ticket.status >= 300) return;
  const token = ticket.json('token');
  for (let i = 0; ticket.json('status') !== 'ACTIVE'; i++) {
    if (i > 120) return;
    sleep(0.5);
    ticket = call('GET', '/v1/queue/tokens/current', null, token, 'poll');
    if (!ticket || ticket.status !== 200) return;
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const schedule = data.schedules[Math.floor(Math.random() * data.schedules.length)];
    const seat = 1 + Math.floor(Math.random() * 50);
    const reserve = call('POST', '/v1/reservations', { scheduleId: schedule, seatNumbers: [seat] }, token, 'reserve', `hold-${user}-${attempt}`);
    if (!reserve || reserve.status !== 202) return;
    const hold = settle(reserve.json('jobId'), access);
    if (!hold || hold.status !== 'SUCCEEDED') continue;
    const pay = call('POST', '/v1/payments', { reservationId: hold.result.reservationId }, token, 'pay', `pay-${user}`);
    if (!pay || pay.status !== 202) return;
    const paid = settle(pay.json('jobId'), access);
    if (paid && paid.status === 'SUCCEEDED') journeys.add(1);
    return;
  }
}

export function handleSummary(data) {
  const m = data.metrics;
  const count = (name) => (m[name] ? m[name].values.count : 0);
  const out = { accepted_jobs: count('accepted_jobs'), refused_5xx: count('refused_5xx'), journeys_completed: count('journeys_completed') };
  return { stdout: `\nchaos: ${JSON.stringify(out)}\n`, [`${__ENV.SUMMARY_DIR || '.'}/chaos.json`]: JSON.stringify(out, null, 2) };
}
