// reservations: sustained reserves of distinct free seats at a constant
// arrival rate; each request's job is long-polled to its end. Reports
// completed holds per second.
//   RES_RATE (reserves/s, 100), RES_DURATION (30s), RES_FANS (500), RES_VUS (RES_RATE / 4)
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { post, signUpMany, issueMany, createConcert, waitJob, summarize, trend, perSecond, TREND_STATS } from './lib/common.js';

const RATE = Number(__ENV.RES_RATE || 100);
const DURATION = __ENV.RES_DURATION || '30s';
const FANS = Number(__ENV.RES_FANS || 500);
// VUs k6 starts with (it adds more, up to 10 × RATE, when all are busy). Each
// VU is a JavaScript runtime of its own: 2 × RATE of them (the old default)
// made k6 spend ~890 µs of CPU per hold on the cores the stack shares, where
// a closed loop of 200 spent ~490 (#28).
const VUS = Number(__ENV.RES_VUS || Math.max(50, Math.ceil(RATE / 4)));

const acceptMs = new Trend('reserve_accept_ms', true);
const holdMs = new Trend('hold_end_to_end_ms', true);
const sentAt = new Trend('reserve_sent_at_ms');
const heldAt = new Trend('hold_completed_at_ms');
const held = new Counter('holds_completed');
const failed = new Counter('holds_failed');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    sustained: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION, preAllocatedVUs: VUS, maxVUs: RATE * 10 },
  },
  setupTimeout: '5m',
  thresholds: { server_errors: ['count==0'], holds_failed: ['count==0'] },
};

export function setup() {
  // Enough distinct seats for every arrival: 50 per date.
  const seconds = parseInt(DURATION, 10) || 30;
  const dates = Math.ceil((RATE * seconds * 1.2) / 50);
  const schedules = [];
  for (let made = 0; made < dates; made += 100) {
    const concert = createConcert(`reservations-${made}`, Math.min(100, dates - made), 30000);
    for (const s of concert.schedules) schedules.push(s.scheduleId);
  }
  const tokens = issueMany(signUpMany(FANS, 'res')).map((t) => ({ token: t.token, access: t.access }));
  // The runner's account of one hold (ACCOUNT=1) starts its counters here.
  console.log('setup done');
  return { schedules, tokens };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const schedule = data.schedules[Math.floor(i / 50) % data.schedules.length];
  const started = Date.now();
  sentAt.add(started);
  const { token, access } = data.tokens[i % data.tokens.length];
  const r = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [(i % 50) + 1] }, token, { name: 'reserve' });
  if (r.status >= 500) server5xx.add(1);
  if (!check(r, { 'reserve accepted (202)': (x) => x.status === 202 })) return;
  acceptMs.add(r.timings.duration);
  const job = waitJob(r.json('jobId'), access); // read with the access token: a signature check, no Redis trip
  if (job && job.status === 'SUCCEEDED') {
    held.add(1);
    heldAt.add(Date.now());
    holdMs.add(Date.now() - started);
  } else {
    failed.add(1);
  }
}

export function handleSummary(data) {
  return summarize(data, 'reservations', (m) => {
    const count = m.holds_completed ? m.holds_completed.values.count : 0;
    return {
      offered_per_second: RATE,
      reserve_accept_ms: trend(m, 'reserve_accept_ms'),
      hold_end_to_end_ms: trend(m, 'hold_end_to_end_ms'),
      holds_completed: count,
      // First request sent to last hold completed: holds sustained end to end.
      holds_per_second: perSecond(m, count, 'reserve_sent_at_ms', 'hold_completed_at_ms'),
      holds_failed: m.holds_failed ? m.holds_failed.values.count : 0,
      iterations_dropped: m.dropped_iterations ? m.dropped_iterations.values.count : 0,
    };
  });
}
