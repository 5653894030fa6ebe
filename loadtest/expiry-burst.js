// expiry-burst: BURST holds made as fast as the stack takes them, which then
// expire together (the runner starts the stack with HOLD_TTL_SECONDS=BURST_TTL)
// while CLOSED_CLIENTS clients reserve in a closed loop (#28, lib/closed-loop.js).
// The closed loop runs from BURST_TTL - 10 s for 30 s, so the expiry falls
// inside it; BURST=0 is the same run without the burst, to compare with.
//   BURST (1000), BURST_TTL (40, seconds; must match the stack's), CLOSED_CLIENTS (200)
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { check } from 'k6';
import { post, signUpMany, issueMany, summarize, trend, perSecond, TREND_STATS } from './lib/common.js';
import { layout, openDates, turn, figures, server5xx } from './lib/closed-loop.js';

const BURST = Number(__ENV.BURST ?? 1000);
const TTL = Number(__ENV.BURST_TTL || 40);
const CLIENTS = Number(__ENV.CLOSED_CLIENTS || 200);
const CLOSED_SECONDS = 30;
const BURST_VUS = Math.min(200, BURST);
// k6 numbers VUs across scenarios, and may or may not reuse the burst's for
// the closed loop: each closed client is its VU's number, so there are seats
// and a fan for every number either way.
const SLOTS = CLIENTS + BURST_VUS;
const SHAPE = layout(SLOTS, CLIENTS, CLOSED_SECONDS, 1500);
// A burst fan takes 4 seats of one date (the default per-person limit), 48 a date.
const BURST_FANS = Math.ceil(BURST / 4);

const burstAccepted = new Counter('burst_accepted');

const scenarios = {
  closed: { executor: 'constant-vus', exec: 'closed', vus: CLIENTS, duration: `${CLOSED_SECONDS}s`, startTime: `${Math.max(0, TTL - 10)}s`, gracefulStop: '30s' },
};
if (BURST > 0) {
  scenarios.burst = { executor: 'shared-iterations', exec: 'burst', vus: BURST_VUS, iterations: BURST, maxDuration: `${TTL - 12}s` };
}

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios,
  setupTimeout: '10m',
  thresholds: { server_errors: ['count==0'], holds_failed: ['count==0'] },
};

export function setup() {
  const fans = issueMany(signUpMany(SLOTS + BURST_FANS, 'burst')).map((t) => ({ token: t.token, access: t.access }));
  const data = {
    closedDates: openDates('closed', SHAPE.dates),
    burstDates: openDates('burst', Math.ceil(BURST / 48)),
    clients: fans.slice(0, SLOTS),
    burstFans: fans.slice(SLOTS),
  };
  console.log('setup done');
  return data;
}

/** One hold of the burst: fan i/4 takes seat i mod 48 + 1 of date i/48; nothing waits for the job. */
export function burst(data) {
  const i = exec.scenario.iterationInTest;
  const r = post('/v1/reservations', { scheduleId: data.burstDates[Math.floor(i / 48)], seatNumbers: [(i % 48) + 1] },
    data.burstFans[Math.floor(i / 4)].token, { name: 'burst reserve' });
  if (r.status >= 500) server5xx.add(1);
  if (check(r, { 'burst reserve accepted (202)': (x) => x.status === 202 })) burstAccepted.add(1);
}

/** The closed loop of `closed.js`. */
export function closed(data) {
  const v = exec.vu.idInTest - 1;
  turn(SHAPE, data.closedDates, data.clients[v], v, exec.vu.iterationInScenario, CLOSED_SECONDS);
}

export function handleSummary(data) {
  return summarize(data, 'expiry-burst', (m) => ({
    burst: BURST,
    burst_ttl_seconds: TTL,
    burst_accepted: m.burst_accepted ? m.burst_accepted.values.count : 0,
    clients: CLIENTS,
    ...figures(m, trend, perSecond),
  }));
}
