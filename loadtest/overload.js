// overload: reserves offered at a multiple of what the stack sustains (#17
// item 5). Two groups at once: `reserves` fires reserve requests at OVER_RATE/s
// and only records the answer (a backlog builds in the queue), while `pollers`
// are fans who reserve and then long-poll their job to its end, so that many
// long-polls stay open through the overload. The runner then waits for the
// queue to drain and checks every accepted job is final (non-final jobs).
// Past RESERVE_BACKLOG_MAX waiting reserves the api sheds with 429 + Retry-After:
// `reserves` only counts those; `pollers` wait the Retry-After (plus jitter) and
// try the same seat again, as the web app does, so their end-to-end time
// includes being told to come back.
//   OVER_RATE (reserves/s, 3000), OVER_DURATION (20s), OVER_POLLERS (1000), OVER_FANS (2000)
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { post, signUpMany, issueMany, createConcert, waitJob, summarize, trend, TREND_STATS } from './lib/common.js';

const RATE = Number(__ENV.OVER_RATE || 3000);
const DURATION = __ENV.OVER_DURATION || '20s';
const POLLERS = Number(__ENV.OVER_POLLERS || 1000);
const FANS = Number(__ENV.OVER_FANS || 2000);

const acceptMs = new Trend('overload_accept_ms', true);
const holdMs = new Trend('poller_end_to_end_ms', true);
const accepted = new Counter('overload_accepted');
const refused4xx = new Counter('overload_refused_4xx');
const shed = new Counter('overload_shed');
const shedMs = new Trend('overload_shed_ms', true);
const server5xx = new Counter('server_errors');
const pollerHolds = new Counter('poller_holds');
const pollerUnfinished = new Counter('poller_unfinished');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    reserves: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION, preAllocatedVUs: 200, maxVUs: 2000, exec: 'reserve' },
    pollers: { executor: 'constant-vus', vus: POLLERS, duration: DURATION, exec: 'poll' },
  },
  setupTimeout: '10m',
  thresholds: { server_errors: ['count==0'] },
};

export function setup() {
  // A distinct seat for every reserve of both groups (50 per date): the groups
  // take alternate seat slots, so twice the reserves of each (a poller is
  // assumed to finish at most one job a second; past that, slots wrap and the
  // later reserves end SEAT_UNAVAILABLE, still final).
  const seconds = parseInt(DURATION, 10) || 20;
  const dates = Math.ceil((2 * Math.max(RATE * seconds * 1.1, POLLERS * seconds)) / 50);
  const schedules = [];
  for (let made = 0; made < dates; made += 100) {
    const concert = createConcert(`overload-${made}`, Math.min(100, dates - made), 30000);
    for (const s of concert.schedules) schedules.push(s.scheduleId);
  }
  const tokens = issueMany(signUpMany(FANS, 'over')).map((t) => ({ token: t.token, access: t.access }));
  console.log('setup done');
  return { schedules, tokens };
}

function send(data, i) {
  const schedule = data.schedules[Math.floor(i / 50) % data.schedules.length];
  const { token } = data.tokens[i % data.tokens.length];
  const r = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [(i % 50) + 1] }, token, { name: 'reserve' });
  if (r.status >= 500) server5xx.add(1);
  else if (r.status === 429) {
    shed.add(1);
    shedMs.add(r.timings.duration);
  } else if (r.status >= 400) refused4xx.add(1);
  return r;
}

export function reserve(data) {
  // Iterations count per group: even seat slots go to this one, odd ones to the pollers.
  const r = send(data, exec.scenario.iterationInTest * 2);
  if (r.status === 202) {
    accepted.add(1);
    acceptMs.add(r.timings.duration);
  }
}

export function poll(data) {
  const i = exec.scenario.iterationInTest * 2 + 1;
  const started = Date.now();
  let r = send(data, i);
  for (let tries = 1; r.status === 429 && tries < 10; tries += 1) {
    sleep(Number(r.headers['Retry-After'] || 1) + Math.random() * 0.5);
    r = send(data, i);
  }
  if (r.status !== 202) return;
  accepted.add(1);
  acceptMs.add(r.timings.duration);
  const job = waitJob(r.json('jobId'), data.tokens[i % data.tokens.length].access);
  if (job) {
    pollerHolds.add(job.status === 'SUCCEEDED' ? 1 : 0);
    holdMs.add(Date.now() - started);
  } else {
    pollerUnfinished.add(1);
  }
}

export function handleSummary(data) {
  return summarize(data, 'overload', (m) => ({
    offered_per_second: RATE,
    pollers: POLLERS,
    accepted: m.overload_accepted ? m.overload_accepted.values.count : 0,
    refused_4xx: m.overload_refused_4xx ? m.overload_refused_4xx.values.count : 0,
    shed_429: m.overload_shed ? m.overload_shed.values.count : 0,
    shed_ms: trend(m, 'overload_shed_ms'),
    server_errors: m.server_errors ? m.server_errors.values.count : 0,
    accept_ms: trend(m, 'overload_accept_ms'),
    poller_end_to_end_ms: trend(m, 'poller_end_to_end_ms'),
    poller_holds: m.poller_holds ? m.poller_holds.values.count : 0,
    poller_unfinished: m.poller_unfinished ? m.poller_unfinished.values.count : 0,
    iterations_dropped: m.dropped_iterations ? m.dropped_iterations.values.count : 0,
  }));
}
