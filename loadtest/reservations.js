// reservations: sustained reserves of distinct free seats at a constant
// arrival rate; each request's job is long-polled to its end. Reports
// completed holds per second, over the measured part: a warm-up at the same
// rate comes first and is not counted (like pgbench's), so a freshly started
// stack's first seconds (pools connecting, k6 starting VUs) are not its rate.
//   RES_RATE (reserves/s, 100), RES_DURATION (30s), RES_FANS (500), RES_VUS (RES_RATE),
//   RES_WARMUP_SECONDS (5; 0: none)
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { post, signUpMany, issueMany, createConcert, waitStatus, summarize, trend, perSecond, TREND_STATS } from './lib/common.js';

const RATE = Number(__ENV.RES_RATE || 100);
const DURATION = __ENV.RES_DURATION || '30s';
const FANS = Number(__ENV.RES_FANS || 500);
const WARMUP = Number(__ENV.RES_WARMUP_SECONDS || 5);
// VUs k6 starts with (it adds more, up to 10 × RATE, when all are busy). Each
// VU is a JavaScript runtime of its own: 2 × RATE of them (the old default)
// made k6 spend ~890 µs of CPU per hold on the cores the stack shares, where
// a closed loop of 200 spent ~490 (#28). Fewer than RATE × the slowest
// iteration, though, and k6 starts VUs mid-run whenever latency spikes (a
// checkpoint), dropping arrivals meanwhile: RATE / 4 (250 ms) dropped more
// than 1 % of a step's arrivals at p99 ~400 ms. RATE covers the 1 s the
// capacity steps allow a hold.
const VUS = Number(__ENV.RES_VUS || Math.max(50, RATE));

const acceptMs = new Trend('reserve_accept_ms', true);
const holdMs = new Trend('hold_end_to_end_ms', true);
const sentAt = new Trend('reserve_sent_at_ms');
const heldAt = new Trend('hold_completed_at_ms');
const held = new Counter('holds_completed');
const failed = new Counter('holds_failed');
const server5xx = new Counter('server_errors');
const refused = new Counter('reserves_refused');
const warmHeld = new Counter('warmup_holds_completed');

export const options = {
  summaryTrendStats: TREND_STATS,
  // Only the tags the summary reads: each tag is built into every sample of
  // every request, on the cores the stack shares.
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
  scenarios: {
    // The warm-up's drops are not counted: a quarter of the VUs and no more,
    // so k6 starts none mid-run there and keeps fewer runtimes alive.
    ...(WARMUP > 0 ? { warmup: arrivals(`${WARMUP}s`, '0s', Math.ceil(VUS / 4), Math.ceil(VUS / 4)) } : {}),
    sustained: arrivals(DURATION, `${WARMUP}s`, VUS, RATE * 10),
  },
  setupTimeout: '5m',
  thresholds: {
    server_errors: ['count==0'],
    holds_failed: ['count==0'],
    // Always true; declared so the summary has the measured part's drops.
    'dropped_iterations{scenario:sustained}': ['count>=0'],
    'dropped_iterations{scenario:warmup}': ['count>=0'],
  },
};

function arrivals(duration, startTime, preAllocatedVUs, maxVUs) {
  return { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration, startTime, preAllocatedVUs, maxVUs };
}

export function setup() {
  // Enough distinct seats for every arrival: 50 per date.
  const seconds = (parseInt(DURATION, 10) || 30) + WARMUP + 1;
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
  const measured = exec.scenario.name === 'sustained';
  // Each scenario counts its own iterations: the measured part's seats come after the warm-up's.
  // (k6 may start a few more than rate × duration: one second's worth of margin.)
  const i = exec.scenario.iterationInTest + (measured ? (WARMUP + 1) * RATE : 0);
  const schedule = data.schedules[Math.floor(i / 50) % data.schedules.length];
  const started = Date.now();
  if (measured) sentAt.add(started);
  const { token, access } = data.tokens[i % data.tokens.length];
  const r = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [(i % 50) + 1] }, token, { name: 'reserve' });
  if (r.status >= 500) server5xx.add(1);
  // Plain comparisons, not check(): each check is one more metric sample per
  // iteration on the cores the stack shares.
  if (r.status !== 202) {
    refused.add(1);
    return;
  }
  if (measured) acceptMs.add(r.timings.duration);
  const status = waitStatus(r.json('jobId'), access); // read with the access token: a signature check, no Redis trip
  if (status === 'SUCCEEDED' && !measured) {
    warmHeld.add(1);
  } else if (status === 'SUCCEEDED') {
    held.add(1);
    heldAt.add(Date.now());
    holdMs.add(Date.now() - started);
  } else {
    failed.add(1);
  }
}

export function handleSummary(data) {
  return summarize(data, 'reservations', (m) => {
    const dropped = (scenario) => {
      const d = m[`dropped_iterations{scenario:${scenario}}`];
      return d ? d.values.count : 0;
    };
    const count = m.holds_completed ? m.holds_completed.values.count : 0;
    return {
      offered_per_second: RATE,
      reserve_accept_ms: trend(m, 'reserve_accept_ms'),
      hold_end_to_end_ms: trend(m, 'hold_end_to_end_ms'),
      holds_completed: count,
      // First request sent to last hold completed: holds sustained end to end.
      holds_per_second: perSecond(m, count, 'reserve_sent_at_ms', 'hold_completed_at_ms'),
      holds_failed: m.holds_failed ? m.holds_failed.values.count : 0,
      reserves_refused: m.reserves_refused ? m.reserves_refused.values.count : 0,
      iterations_dropped: dropped('sustained'),
      warmup_holds_completed: m.warmup_holds_completed ? m.warmup_holds_completed.values.count : 0,
      warmup_iterations_dropped: dropped('warmup'),
    };
  });
}
