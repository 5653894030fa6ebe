// The closed loop `closed.js` and `expiry-burst.js` share (#28): each client
// reserves one free seat of its own dates, long-polls the job to its end, then
// sends the next. Client v's k-th hold is seat (v mod 12) × 4 + k mod 4 + 1 of
// date (round k div 4, group v div 12): 12 clients share a date's 50 seats, 4
// each (the default MAX_SEATS_PER_USER).
import { Counter, Trend } from 'k6/metrics';
import { check, sleep } from 'k6';
import { post, createConcert, waitJob } from './common.js';

const PER_DATE = 4;
const PER_GROUP = 12;

export const outcomeMs = new Trend('outcome_ms', true);
export const acceptMs = new Trend('reserve_accept_ms', true);
export const sentAt = new Trend('reserve_sent_at_ms');
export const heldAt = new Trend('hold_completed_at_ms');
export const held = new Counter('holds_completed');
export const failed = new Counter('holds_failed');
export const refused = new Counter('reserves_refused');
export const exhausted = new Counter('clients_out_of_seats');
export const server5xx = new Counter('server_errors');

/** Dates for `slots` clients over `seconds` at up to `maxRate` holds/s shared by `clients`. */
export function layout(slots, clients, seconds, maxRate) {
  const groups = Math.ceil(slots / PER_GROUP);
  const rounds = Math.ceil((seconds * maxRate) / clients / PER_DATE);
  return { groups, rounds, dates: groups * rounds };
}

/** `n` open dates (admin), 100 per concert; their schedule ids in order. */
export function openDates(label, n) {
  const schedules = [];
  for (let made = 0; made < n; made += 100) {
    const concert = createConcert(`${label}-${made}`, Math.min(100, n - made), 30000);
    for (const s of concert.schedules) schedules.push(s.scheduleId);
  }
  return schedules;
}

/** Client v's k-th turn: one hold polled to its end (a client out of seats sleeps `idle` s). */
export function turn(shape, dates, client, v, k, idle) {
  const round = Math.floor(k / PER_DATE);
  if (round >= shape.rounds) {
    exhausted.add(1);
    sleep(idle);
    return;
  }
  const schedule = dates[round * shape.groups + Math.floor(v / PER_GROUP)];
  const seat = (v % PER_GROUP) * PER_DATE + (k % PER_DATE) + 1;
  const started = Date.now();
  sentAt.add(started);
  const r = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [seat] }, client.token, { name: 'reserve' });
  if (r.status >= 500) server5xx.add(1);
  if (r.status === 429) {
    // Shed or over a bound: a real app waits as told and tries again.
    refused.add(1);
    sleep(Number(r.headers['Retry-After'] || 1));
    return;
  }
  if (!check(r, { 'reserve accepted (202)': (x) => x.status === 202 })) return;
  acceptMs.add(r.timings.duration);
  const job = waitJob(r.json('jobId'), client.access);
  if (job && job.status === 'SUCCEEDED') {
    held.add(1);
    heldAt.add(Date.now());
    outcomeMs.add(Date.now() - started);
  } else {
    failed.add(1);
  }
}

/** The figures both scripts report. */
export function figures(m, trend, perSecond) {
  const count = m.holds_completed ? m.holds_completed.values.count : 0;
  const n = (name) => (m[name] ? m[name].values.count : 0);
  return {
    outcome_ms: trend(m, 'outcome_ms'),
    reserve_accept_ms: trend(m, 'reserve_accept_ms'),
    holds_completed: count,
    holds_per_second: perSecond(m, count, 'reserve_sent_at_ms', 'hold_completed_at_ms'),
    holds_failed: n('holds_failed'),
    reserves_refused: n('reserves_refused'),
    clients_out_of_seats: n('clients_out_of_seats'),
  };
}
