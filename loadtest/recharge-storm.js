// recharge-storm: many concurrent recharges of few users. Every accepted
// recharge must be applied exactly once: the final balances must equal the
// sum of the succeeded jobs.
//   STORM_USERS (10), STORM_RATE (recharges/s, 300), STORM_DURATION (20s),
//   STORM_KEYS (unset; 1 = every recharge carries its own Idempotency-Key, as clients should)
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { post, get, signUpMany, waitJob, summarize, trend, TREND_STATS } from './lib/common.js';

const USERS = Number(__ENV.STORM_USERS || 10);
const RATE = Number(__ENV.STORM_RATE || 300);
const DURATION = __ENV.STORM_DURATION || '20s';
const AMOUNT = 1000;

const acceptMs = new Trend('recharge_accept_ms', true);
const applied = new Counter('recharges_applied');
const failed = new Counter('recharges_failed');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    storm: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION, preAllocatedVUs: 100, maxVUs: 2000 },
  },
  thresholds: { server_errors: ['count==0'], recharges_failed: ['count==0'] },
};

export function setup() {
  return { users: signUpMany(USERS, 'storm') };
}

export default function (data) {
  const user = data.users[exec.scenario.iterationInTest % data.users.length];
  const headers = __ENV.STORM_KEYS ? { 'Idempotency-Key': `storm-${exec.scenario.iterationInTest}` } : {};
  const r = post(`/v1/users/${user.userId}/balance/recharges`, { amount: AMOUNT }, user.access, { name: 'recharge', headers });
  if (r.status >= 500) server5xx.add(1);
  if (!check(r, { 'recharge accepted (202)': (x) => x.status === 202 })) return;
  acceptMs.add(r.timings.duration);
  const job = waitJob(r.json('jobId'), user.access);
  if (job && job.status === 'SUCCEEDED') applied.add(1);
  else failed.add(1);
}

export function teardown(data) {
  let total = 0;
  for (const u of data.users) total += get(`/v1/users/${u.userId}/balance`, u.access, 'balance').json('balance');
  console.log(`recharge-storm: balances total ${total} won`);
}

export function handleSummary(data) {
  return summarize(data, 'recharge-storm', (m) => ({
    recharge_accept_ms: trend(m, 'recharge_accept_ms'),
    recharges_applied: m.recharges_applied ? m.recharges_applied.values.count : 0,
    recharges_per_second: m.recharges_applied ? m.recharges_applied.values.rate : 0,
    recharges_failed: m.recharges_failed ? m.recharges_failed.values.count : 0,
  }));
}
