// hot-seat: 10,000 reserve requests for ONE seat from 1,000 fans, each then
// long-polling its job. Exactly one hold may win; every other job must end
// FAILED/SEAT_UNAVAILABLE, quickly.
//   HOT_FANS (1000), HOT_REQUESTS (10000), HOT_VUS (200)
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { post, signUpMany, issueMany, createConcert, waitJob, summarize, trend, TREND_STATS } from './lib/common.js';

const FANS = Number(__ENV.HOT_FANS || 1000);
const REQUESTS = Number(__ENV.HOT_REQUESTS || 10000);

const acceptMs = new Trend('reserve_accept_ms', true);
const acceptedAt = new Trend('accepted_at_ms');
const finalAt = new Trend('final_at_ms');
const won = new Counter('holds_won');
const lost = new Counter('seat_unavailable');
const other = new Counter('jobs_other_outcome');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    stampede: { executor: 'shared-iterations', vus: Number(__ENV.HOT_VUS || 200), iterations: REQUESTS, maxDuration: '5m' },
  },
  setupTimeout: '5m',
  thresholds: {
    reserve_accept_ms: ['p(99)<=50'],
    holds_won: ['count==1'],
    jobs_other_outcome: ['count==0'],
    server_errors: ['count==0'],
  },
};

export function setup() {
  const concert = createConcert('hot-seat', 1, 50000);
  const users = signUpMany(FANS, 'hot');
  const tokens = issueMany(users).map((t) => ({ token: t.token, access: t.access }));
  return { scheduleId: concert.schedules[0].scheduleId, tokens };
}

export default function (data) {
  const { token, access } = data.tokens[exec.scenario.iterationInTest % data.tokens.length];
  const r = post('/v1/reservations', { scheduleId: data.scheduleId, seatNumbers: [1] }, token, { name: 'reserve' });
  if (r.status >= 500) server5xx.add(1);
  if (!check(r, { 'reserve accepted (202)': (x) => x.status === 202 })) return;
  acceptMs.add(r.timings.duration);
  acceptedAt.add(Date.now());
  const job = waitJob(r.json('jobId'), access); // read with the access token: a signature check, no Redis trip
  finalAt.add(Date.now());
  if (job && job.status === 'SUCCEEDED') won.add(1);
  else if (job && job.error && job.error.code === 'SEAT_UNAVAILABLE') lost.add(1);
  else other.add(1);
}

export function handleSummary(data) {
  return summarize(data, 'hot-seat', (m) => ({
    reserve_accept_ms: trend(m, 'reserve_accept_ms'),
    holds_won: m.holds_won ? m.holds_won.values.count : 0,
    seat_unavailable: m.seat_unavailable ? m.seat_unavailable.values.count : 0,
    other_outcomes: m.jobs_other_outcome ? m.jobs_other_outcome.values.count : 0,
    server_errors: m.server_errors ? m.server_errors.values.count : 0,
    final_after_last_accept_ms: m.final_at_ms && m.accepted_at_ms ? m.final_at_ms.values.max - m.accepted_at_ms.values.max : null,
  }));
}
