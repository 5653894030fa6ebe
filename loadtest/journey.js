// journey: whole fan journeys — sign up, recharge, get in line and wait to be
// admitted, browse dates and seats, reserve, pay — each step checked.
//   JOURNEY_VUS (50), JOURNEY_DURATION (60s)
import { Counter, Trend } from 'k6/metrics';
import { check, sleep } from 'k6';
import { post, get, createConcert, waitJob, summarize, trend, TREND_STATS } from './lib/common.js';

const journeyMs = new Trend('journey_ms', true);
const done = new Counter('journeys_completed');
const gaveUp = new Counter('journeys_abandoned');
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: { fans: { executor: 'constant-vus', vus: Number(__ENV.JOURNEY_VUS || 50), duration: __ENV.JOURNEY_DURATION || '60s' } },
  setupTimeout: '5m',
  thresholds: { server_errors: ['count==0'], journeys_completed: ['count>0'] },
};

export function setup() {
  for (let c = 0; c < 5; c++) createConcert(`journey-${c}`, 20, 40000);
}

function ok(r, what) {
  if (r.status >= 500) server5xx.add(1);
  return check(r, { [what]: (x) => x.status >= 200 && x.status < 300 });
}

export default function () {
  const started = Date.now();
  const signup = post('/v1/users', { name: `journey-${__VU}-${__ITER}` }, null, { name: 'sign-up' });
  if (!ok(signup, 'signed up')) return gaveUp.add(1);
  const user = signup.json('userId');
  const topup = post(`/v1/users/${user}/balance/recharges`, { amount: 200000 }, null, { name: 'recharge', headers: { 'Idempotency-Key': `topup-${user}` } });
  if (!ok(topup, 'recharge accepted') || !waitJob(topup.json('jobId'))) return gaveUp.add(1);
  let ticket = post('/v1/queue/tokens', { userId: user }, null, { name: 'issue' });
  if (!ok(ticket, 'in line')) return gaveUp.add(1);
  const token = ticket.json('token');
  for (let i = 0; ticket.json('status') !== 'ACTIVE'; i++) {
    if (i > 600) return gaveUp.add(1);
    sleep(Math.min(2, Math.max(0.2, ticket.json('estimatedWaitSeconds') / 4)));
    ticket = get('/v1/queue/tokens/current', token, 'poll');
    if (!ok(ticket, 'polled')) return gaveUp.add(1);
  }
  const concerts = get('/v1/concerts', token, 'concerts');
  if (!ok(concerts, 'concerts')) return gaveUp.add(1);
  const items = concerts.json('items');
  const concert = items[Math.floor(Math.random() * items.length)].concertId;
  const dates = get(`/v1/concerts/${concert}/schedules`, token, 'schedules');
  if (!ok(dates, 'dates')) return gaveUp.add(1);
  const open = dates.json('items').filter((s) => s.availableSeats > 0);
  if (open.length === 0) return gaveUp.add(1);
  const schedule = open[Math.floor(Math.random() * open.length)].scheduleId;
  for (let attempt = 0; attempt < 5; attempt++) {
    const seats = get(`/v1/schedules/${schedule}/seats`, token, 'seats');
    if (!ok(seats, 'seats')) return gaveUp.add(1);
    const free = seats.json('items').filter((s) => s.status === 'AVAILABLE');
    if (free.length === 0) return gaveUp.add(1);
    const pick = free[Math.floor(Math.random() * free.length)].number;
    const reserve = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [pick] }, token, { name: 'reserve' });
    if (!ok(reserve, 'reserve accepted')) return gaveUp.add(1);
    const hold = waitJob(reserve.json('jobId'));
    if (!hold || hold.status !== 'SUCCEEDED') continue; // someone was faster: pick again
    const pay = post('/v1/payments', { reservationId: hold.result.reservationId }, token, { name: 'pay' });
    if (!ok(pay, 'pay accepted')) return gaveUp.add(1);
    const paid = waitJob(pay.json('jobId'));
    if (check(paid, { 'paid': (p) => p && p.status === 'SUCCEEDED' })) {
      done.add(1);
      journeyMs.add(Date.now() - started);
      return;
    }
    return gaveUp.add(1);
  }
  gaveUp.add(1);
}

export function handleSummary(data) {
  return summarize(data, 'journey', (m) => ({
    journey_ms: trend(m, 'journey_ms'),
    journeys_completed: m.journeys_completed ? m.journeys_completed.values.count : 0,
    journeys_per_second: m.journeys_completed ? m.journeys_completed.values.rate : 0,
    journeys_abandoned: m.journeys_abandoned ? m.journeys_abandoned.values.count : 0,
    server_errors: m.server_errors ? m.server_errors.values.count : 0,
  }));
}
