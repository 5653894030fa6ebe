// closed: N clients in a closed loop (#28), the model a fan's app follows —
// each reserves one free seat of its own dates, long-polls the job to its
// end, then sends the next (lib/closed-loop.js). Throughput is whatever the
// stack returns: unlike the open-model `reservations` (a fixed arrival rate),
// nothing queues in k6, so more clients than the worker takes in at once wait
// on the worker.
//   CLOSED_CLIENTS (200), CLOSED_DURATION (30s), CLOSED_MAX_RATE (1500: holds/s
//   the seats are sized for; a client that used up its seats stops)
import exec from 'k6/execution';
import { signUpMany, issueMany, summarize, trend, perSecond, TREND_STATS } from './lib/common.js';
import { layout, openDates, turn, figures } from './lib/closed-loop.js';

const CLIENTS = Number(__ENV.CLOSED_CLIENTS || 200);
const DURATION = __ENV.CLOSED_DURATION || '30s';
const SECONDS = parseInt(DURATION, 10) || 30;
const SHAPE = layout(CLIENTS, CLIENTS, SECONDS, Number(__ENV.CLOSED_MAX_RATE || 1500));

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: { closed: { executor: 'constant-vus', vus: CLIENTS, duration: DURATION, gracefulStop: '30s' } },
  setupTimeout: '10m',
  thresholds: { server_errors: ['count==0'], holds_failed: ['count==0'] },
};

export function setup() {
  const dates = openDates('closed', SHAPE.dates);
  const clients = issueMany(signUpMany(CLIENTS, 'closed')).map((t) => ({ token: t.token, access: t.access }));
  console.log('setup done');
  return { dates, clients };
}

export default function (data) {
  const v = exec.vu.idInTest - 1;
  turn(SHAPE, data.dates, data.clients[v], v, exec.vu.iterationInScenario, SECONDS);
}

export function handleSummary(data) {
  return summarize(data, 'closed', (m) => ({ clients: CLIENTS, ...figures(m, trend, perSecond) }));
}
