// waiting-room: a spike of token issues, each fan then polling its standing.
// Measures issue throughput and poll latency.
//   WR_FANS (20000), WR_RATE (issues/s, 2000), WR_POLLS (per fan, 3)
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { post, get, signUpMany, summarize, trend, TREND_STATS } from './lib/common.js';

const FANS = Number(__ENV.WR_FANS || 20000);
const RATE = Number(__ENV.WR_RATE || 2000);
const POLLS = Number(__ENV.WR_POLLS || 3);

const issueMs = new Trend('token_issue_ms', true);
const pollMs = new Trend('status_poll_ms', true);
const issued = new Counter('tokens_issued');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    spike: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${Math.ceil(FANS / RATE)}s`, preAllocatedVUs: 200, maxVUs: 2000 },
  },
  setupTimeout: '10m',
  thresholds: { status_poll_ms: ['p(99)<=10'], server_errors: ['count==0'] },
};

export function setup() {
  return { users: signUpMany(FANS, 'wr') };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  if (i >= data.users.length) return;
  const r = post('/v1/queue/tokens', { userId: data.users[i] }, null, { name: 'issue' });
  if (r.status >= 500) server5xx.add(1);
  if (!check(r, { 'token issued': (x) => x.status === 201 || x.status === 200 })) return;
  issued.add(1);
  issueMs.add(r.timings.duration);
  const token = r.json('token');
  for (let p = 0; p < POLLS; p++) {
    const s = get('/v1/queue/tokens/current', token, 'poll');
    if (s.status >= 500) server5xx.add(1);
    if (check(s, { 'poll ok': (x) => x.status === 200 })) pollMs.add(s.timings.duration);
  }
}

export function handleSummary(data) {
  return summarize(data, 'waiting-room', (m) => ({
    token_issue_ms: trend(m, 'token_issue_ms'),
    status_poll_ms: trend(m, 'status_poll_ms'),
    tokens_issued: m.tokens_issued ? m.tokens_issued.values.count : 0,
    issues_per_second: m.tokens_issued ? m.tokens_issued.values.rate : 0,
  }));
}
