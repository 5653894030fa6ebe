// waiting-room: a spike of token issues, then fans polling their standing.
// Two phases, so each target is measured on its own: `spike` offers WR_RATE
// issues/s (one per fan) and measures the issue throughput actually achieved;
// `polls` then offers WR_POLL_RATE status polls/s and measures their latency.
//   WR_FANS (30000), WR_RATE (issues/s offered, 5000),
//   WR_POLL_RATE (polls/s, 1000), WR_POLL_SECONDS (20),
//   WR_FANS_FILE: accounts written by prepare-fans.js, shared by every VU
//   (the runner makes it); without it setup() signs the fans up, which is
//   fine for a few thousand but copies every access token into every VU.
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { get, issue as issueFor, signUpMany, summarize, trend, perSecond, TREND_STATS } from './lib/common.js';

const FANS = Number(__ENV.WR_FANS || 30000);
const RATE = Number(__ENV.WR_RATE || 5000);
const POLL_RATE = Number(__ENV.WR_POLL_RATE || 1000);
const POLL_SECONDS = Number(__ENV.WR_POLL_SECONDS || 20);
const SPIKE_SECONDS = Math.ceil(FANS / RATE);

const issueMs = new Trend('token_issue_ms', true);
const issuedAt = new Trend('issued_at_ms');
const pollMs = new Trend('status_poll_ms', true);
const issued = new Counter('tokens_issued');
const polled = new Counter('polls_answered');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    spike: {
      executor: 'constant-arrival-rate', exec: 'issue', rate: RATE, timeUnit: '1s',
      duration: `${SPIKE_SECONDS}s`, preAllocatedVUs: 300, maxVUs: 2000,
    },
    polls: {
      executor: 'constant-arrival-rate', exec: 'poll', rate: POLL_RATE, timeUnit: '1s',
      duration: `${POLL_SECONDS}s`, startTime: `${SPIKE_SECONDS + 3}s`, preAllocatedVUs: 50, maxVUs: 500,
    },
  },
  setupTimeout: '10m',
  thresholds: { status_poll_ms: ['p(99)<=10'], server_errors: ['count==0'] },
};

const FANS_FILE = __ENV.WR_FANS_FILE;
const shared = FANS_FILE ? new SharedArray('fans', () => JSON.parse(open(FANS_FILE))) : null;

export function setup() {
  return shared ? { users: null } : { users: signUpMany(FANS, 'wr') };
}

function fans(data) {
  return shared || data.users;
}

function tally(r, what, ok) {
  if (r.status >= 500) server5xx.add(1);
  return check(r, { [what]: ok });
}

export function issue(data) {
  const i = exec.scenario.iterationInTest;
  const users = fans(data);
  if (i >= users.length) return;
  const r = issueFor(users[i].access, 'issue');
  if (!tally(r, 'token issued', (x) => x.status === 201)) return;
  issued.add(1);
  issueMs.add(r.timings.duration);
  issuedAt.add(Date.now());
}

// Each polling VU holds one fan's token (that fan's live token from the spike,
// or a new one if the spike dropped it) and polls it at the offered rate.
let token = null;

export function poll(data) {
  if (!token) {
    const users = fans(data);
    const user = users[(exec.vu.idInTest * 7919) % users.length];
    const r = issueFor(user.access, 'poll-setup');
    if (!tally(r, 'token for polling', (x) => x.status === 200 || x.status === 201)) return;
    token = r.json('token');
  }
  const s = get('/v1/queue/tokens/current', token, 'poll');
  if (tally(s, 'poll ok', (x) => x.status === 200)) {
    polled.add(1);
    pollMs.add(s.timings.duration);
  } else {
    token = null;
  }
}

export function handleSummary(data) {
  return summarize(data, 'waiting-room', (m) => {
    const count = m.tokens_issued ? m.tokens_issued.values.count : 0;
    return {
      offered_issues_per_second: RATE,
      token_issue_ms: trend(m, 'token_issue_ms'),
      status_poll_ms: trend(m, 'status_poll_ms'),
      tokens_issued: count,
      iterations_dropped: m.dropped_iterations ? m.dropped_iterations.values.count : 0,
      // First to last successful issue.
      issues_per_second: perSecond(m, count, 'issued_at_ms'),
      polls: m.polls_answered ? m.polls_answered.values.count : 0,
      server_errors: m.server_errors ? m.server_errors.values.count : 0,
    };
  });
}
