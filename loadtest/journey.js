// journey: whole fan journeys — sign up, recharge, get in line and wait to be
// admitted, browse dates and seats, reserve, pay — each step checked.
//   JOURNEY_VUS (50), JOURNEY_DURATION (60s)
import { Counter, Trend } from 'k6/metrics';
import { check, sleep } from 'k6';
import { post, get, issue, createConcert, waitJob, summarize, trend, TREND_STATS } from './lib/common.js';

const journeyMs = new Trend('journey_ms', true);
const done = new Counter('journeys_completed');
const gaveUp = new Counter('journeys_abandoned');
// Why a journey was abandoned: one counter per step, so the summary can say.
const REASONS = ['sign_up', 'recharge', 'queue', 'admission_wait', 'concerts', 'dates', 'sold_out', 'seats', 'reserve', 'lost_seat_5_times', 'pay', 'payment_failed'];
const abandonedFor = Object.fromEntries(REASONS.map((r) => [r, new Counter(`abandoned_${r}`)]));
function abandon(reason) {
  gaveUp.add(1);
  abandonedFor[reason].add(1);
}
const server5xx = new Counter('server_errors');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: { fans: { executor: 'constant-vus', vus: Number(__ENV.JOURNEY_VUS || 50), duration: __ENV.JOURNEY_DURATION || '60s' } },
  setupTimeout: '5m',
  thresholds: { server_errors: ['count==0'], journeys_completed: ['count>0'] },
};

// The fans want these concerts (other scenarios' concerts in the same database
// may be sold out); the catalog is still read as a fan would.
export function setup() {
  const ids = [];
  for (let c = 0; c < 5; c++) ids.push(createConcert(`journey-${c}`, 20, 40000).concertId);
  return { concerts: ids };
}

function ok(r, what) {
  if (r.status >= 500) server5xx.add(1);
  return check(r, { [what]: (x) => x.status >= 200 && x.status < 300 });
}

export default function (data) {
  const started = Date.now();
  const signup = post('/v1/users', { name: `journey-${__VU}-${__ITER}` }, null, { name: 'sign-up' });
  if (!ok(signup, 'signed up')) return abandon('sign_up');
  const user = signup.json('userId');
  const access = signup.json('accessToken');
  const topup = post(`/v1/users/${user}/balance/recharges`, { amount: 200000 }, access, { name: 'recharge', headers: { 'Idempotency-Key': `topup-${user}` } });
  if (!ok(topup, 'recharge accepted') || !waitJob(topup.json('jobId'), access)) return abandon('recharge');
  let ticket = issue(access);
  if (!ok(ticket, 'in line')) return abandon('queue');
  const token = ticket.json('token');
  for (let i = 0; ticket.json('status') !== 'ACTIVE'; i++) {
    if (i > 600) return abandon('admission_wait');
    sleep(Math.min(2, Math.max(0.2, ticket.json('estimatedWaitSeconds') / 4)));
    ticket = get('/v1/queue/tokens/current', token, 'poll');
    if (!ok(ticket, 'polled')) return abandon('admission_wait');
  }
  const concerts = get('/v1/concerts', token, 'concerts');
  if (!ok(concerts, 'concerts')) return abandon('concerts');
  const listed = concerts.json('items').map((c) => c.concertId).filter((id) => data.concerts.includes(id));
  if (listed.length === 0) return abandon('concerts');
  const concert = listed[Math.floor(Math.random() * listed.length)];
  const dates = get(`/v1/concerts/${concert}/schedules`, token, 'schedules');
  if (!ok(dates, 'dates')) return abandon('dates');
  const open = dates.json('items').filter((s) => s.availableSeats > 0);
  if (open.length === 0) return abandon('sold_out');
  const schedule = open[Math.floor(Math.random() * open.length)].scheduleId;
  for (let attempt = 0; attempt < 5; attempt++) {
    const seats = get(`/v1/schedules/${schedule}/seats`, token, 'seats');
    if (!ok(seats, 'seats')) return abandon('seats');
    const free = seats.json('items').filter((s) => s.status === 'AVAILABLE');
    if (free.length === 0) return abandon('sold_out');
    const pick = free[Math.floor(Math.random() * free.length)].number;
    const reserve = post('/v1/reservations', { scheduleId: schedule, seatNumbers: [pick] }, token, { name: 'reserve' });
    if (!ok(reserve, 'reserve accepted')) return abandon('reserve');
    const hold = waitJob(reserve.json('jobId'), access);
    if (!hold || hold.status !== 'SUCCEEDED') continue; // someone was faster: pick again
    const pay = post('/v1/payments', { reservationId: hold.result.reservationId }, token, { name: 'pay' });
    if (!ok(pay, 'pay accepted')) return abandon('pay');
    // The access token, not the queue token: a successful payment ends the queue session.
    const paid = waitJob(pay.json('jobId'), access);
    if (check(paid, { 'paid': (p) => p && p.status === 'SUCCEEDED' })) {
      done.add(1);
      journeyMs.add(Date.now() - started);
      return;
    }
    return abandon('payment_failed');
  }
  abandon('lost_seat_5_times');
}

export function handleSummary(data) {
  return summarize(data, 'journey', (m) => ({
    journey_ms: trend(m, 'journey_ms'),
    journeys_completed: m.journeys_completed ? m.journeys_completed.values.count : 0,
    journeys_per_second: m.journeys_completed ? m.journeys_completed.values.rate : 0,
    journeys_abandoned: m.journeys_abandoned ? m.journeys_abandoned.values.count : 0,
    abandoned_by_reason: Object.fromEntries(REASONS.filter((r) => m[`abandoned_${r}`]).map((r) => [r, m[`abandoned_${r}`].values.count])),
    server_errors: m.server_errors ? m.server_errors.values.count : 0,
  }));
}
