// The fan web app: sign up, wait in line, pick seats, hold, top up, pay.
//
// It talks only to the public API (see /docs) on its own origin. The access
// token, the queue token and a live hold are kept in sessionStorage, so a
// reload resumes where the fan was and closing the tab forgets them. Every
// server text is put on the page with textContent, never as markup.
'use strict';

(() => {
  const MAX_SEATS = 4;
  const SEAT_REFRESH_MS = 3000;
  const JOB_WAIT_SECONDS = 20;

  const $ = (id) => document.getElementById(id);

  // ---- state ---------------------------------------------------------------

  const store = {
    get(key) {
      try { return JSON.parse(sessionStorage.getItem('concert.' + key)); } catch { return null; }
    },
    set(key, value) {
      try { sessionStorage.setItem('concert.' + key, JSON.stringify(value)); } catch { /* private mode: memory only */ }
    },
    del(key) {
      try { sessionStorage.removeItem('concert.' + key); } catch { /* ignore */ }
    },
  };

  const state = {
    user: store.get('user'), // { userId, name, accessToken }
    queueToken: store.get('queueToken'),
    activeUntil: null,
    hold: store.get('hold'), // reserve job result
    concerts: [],
    schedules: [],
    scheduleId: null,
    seats: new Map(), // number -> status
    selected: new Set(),
    reserving: null, // { sig, key } of the reserve in flight
    lastReserve: null, // the same, kept until its outcome is known (a retry reuses the key)
    lastPay: null,
    lastRecharge: null,
    paying: null, // { key } of the payment in flight
    recharging: null, // { amount, key } of the top-up in flight
    clockSkewMs: 0, // server clock minus ours, from the Date header
  };

  const timers = {};
  function later(name, ms, fn) {
    clearTimeout(timers[name]);
    timers[name] = setTimeout(fn, ms);
  }
  function stop(name) {
    clearTimeout(timers[name]);
    clearInterval(timers[name]);
    delete timers[name];
  }

  // ---- the API -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      const p = problem && typeof problem === 'object' ? problem : {};
      super(p.detail || `The service answered ${status}.`);
      this.status = status;
      this.code = p.code || (status ? `HTTP_${status}` : 'NETWORK');
      this.detail = p.detail || this.message;
      this.field = p.field;
      this.retryAfter = retryAfter;
    }
  }

  function noteServerDate(resp) {
    const date = Date.parse(resp.headers.get('date') || '');
    if (Number.isNaN(date)) return;
    // The header has whole seconds: the server's now is in [date, date + 1 s).
    // A device clock inside that window (give or take the trip) is trusted;
    // one outside it is corrected to the middle of the window.
    const behind = date - Date.now();
    state.clockSkewMs = behind > 0 || behind < -1500 ? behind + 500 : 0;
  }
  const serverNow = () => Date.now() + state.clockSkewMs;

  async function api(method, path, { token, body, idempotencyKey } = {}) {
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, { code: 'NETWORK', detail: 'The service could not be reached. Check your connection; we will keep trying.' });
    }
    noteServerDate(resp);
    if (resp.status === 204) return null;
    const type = resp.headers.get('content-type') || '';
    const data = type.includes('json') ? await resp.json().catch(() => null) : null;
    if (!resp.ok) {
      const retry = Number.parseInt(resp.headers.get('retry-after') || '', 10);
      throw new ApiError(resp.status, data, Number.isNaN(retry) ? null : retry);
    }
    return data;
  }

  // An Idempotency-Key: random, so a retry of the same click reuses it and a
  // new click makes a new one. getRandomValues works on plain http too.
  function newKey(kind) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return kind + '-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // Waits for a job to be final with long polls (GET /v1/jobs/{id}?waitSeconds=…),
  // read with the access token so it still works after a payment ends the
  // queue session. `progress` sees every intermediate state.
  async function settle(jobId, progress) {
    let failures = 0;
    for (;;) {
      try {
        const job = await api('GET', `/v1/jobs/${encodeURIComponent(jobId)}?waitSeconds=${JOB_WAIT_SECONDS}`, { token: state.user.accessToken });
        failures = 0;
        if (job.status === 'SUCCEEDED' || job.status === 'FAILED') return job;
        progress(job);
      } catch (e) {
        if (e.status && e.status < 500) throw e;
        failures += 1;
        progress({ status: 'RETRYING', error: e });
        await pause(retryDelay(e, failures));
      }
    }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  function retryDelay(err, attempt) {
    if (err && err.retryAfter) return err.retryAfter * 1000;
    return Math.min(1000 * 2 ** Math.min(attempt, 4), 15000);
  }

  // ---- formatting ----------------------------------------------------------

  const won = (n) => `${Number(n).toLocaleString('en-US')} won`;
  const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const seatList = (nums) => (nums.length === 1 ? `seat ${nums[0]}` : `seats ${nums.join(', ')}`);
  const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);
  function mmss(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }
  function duration(seconds) {
    if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
    const m = Math.round(seconds / 60);
    return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  const FRIENDLY = {
    SEAT_UNAVAILABLE: 'Someone else got there first.',
    SEAT_LIMIT_EXCEEDED: 'That is more seats than one fan may hold for this date.',
    BOOKING_CLOSED: 'Booking for this date is not open.',
    INSUFFICIENT_BALANCE: 'Your balance does not cover this hold. Top up, then pay.',
    HOLD_EXPIRED: 'Your hold ran out before the payment.',
    ALREADY_PAID: 'This hold is already paid.',
    TOKEN_INVALID: 'Your place in line has ended.',
    QUEUE_WAITING: 'You are still in line.',
    UNAUTHORIZED: 'Please sign up again.',
    UNAVAILABLE: 'The service is busy or briefly down; try again in a moment.',
    VALIDATION_FAILED: 'Please check what you entered.',
    NETWORK: 'No connection.',
  };

  // ---- the page ------------------------------------------------------------

  function showError(code, detail) {
    $('error-title').textContent = FRIENDLY[code] || 'Something went wrong.';
    $('error-code').textContent = code;
    $('error-detail').textContent = detail;
    $('error').hidden = false;
  }
  const showProblem = (e) => showError(e.code || 'ERROR', e.detail || String(e));
  function clearError() {
    $('error').hidden = true;
  }

  function show(stepId, focus) {
    const el = $(stepId);
    const was = !el.hidden;
    el.hidden = false;
    if (focus && !was) {
      const h = el.querySelector('h2');
      if (h) h.focus({ preventScroll: false });
    }
  }
  const hide = (stepId) => { $(stepId).hidden = true; };

  function busy(button, on) {
    button.disabled = on;
    button.setAttribute('aria-busy', String(on));
  }

  function renderWho() {
    const who = $('whoami');
    who.hidden = !state.user;
    if (state.user) who.textContent = `Signed in as ${state.user.name}`;
  }

  // ---- 1. sign up ----------------------------------------------------------

  async function signUp(event) {
    event.preventDefault();
    const name = $('name').value.trim();
    if (!name) {
      showError('VALIDATION_FAILED', 'name: please enter your name');
      $('name').focus();
      return;
    }
    clearError();
    busy($('signup'), true);
    try {
      const user = await api('POST', '/v1/users', { body: { name } });
      state.user = { userId: user.userId, name: user.name, accessToken: user.accessToken };
      store.set('user', state.user);
      renderWho();
      hide('step-signup');
      show('step-queue', true);
      $('join').focus();
    } catch (e) {
      showProblem(e);
    } finally {
      busy($('signup'), false);
    }
  }

  // ---- 2. the line ---------------------------------------------------------

  async function join() {
    clearError();
    busy($('join'), true);
    try {
      const ticket = await api('POST', '/v1/queue/tokens', { token: state.user.accessToken });
      state.queueToken = ticket.token;
      store.set('queueToken', ticket.token);
      $('join').hidden = true;
      await onTicket(ticket);
    } catch (e) {
      showProblem(e);
      if (e.status === 401) signOut();
    } finally {
      busy($('join'), false);
    }
  }

  // The API suggests no poll interval (no Retry-After on a 200), so: about a
  // third of the estimated wait, between 1 and 5 seconds, far inside the
  // QUEUE_WAITING_TTL_SECONDS (60 by default) after which an unpolled place is
  // given up. A Retry-After on an error is honoured.
  const queuePollMs = (ticket) => Math.min(5000, Math.max(1000, (ticket.estimatedWaitSeconds * 1000) / 3));

  let pollFailures = 0;
  async function pollQueue() {
    if (!state.queueToken) return;
    let ticket;
    try {
      ticket = await api('GET', '/v1/queue/tokens/current', { token: state.queueToken });
    } catch (e) {
      if (e.status === 401) {
        lineEnded('Your place in line has ended (it expired or was used). Join again to continue.');
        return;
      }
      pollFailures += 1;
      showProblem(e);
      later('queue', retryDelay(e, pollFailures), pollQueue);
      return;
    }
    // Back in touch: the problem the last poll showed is over.
    if (pollFailures) clearError();
    pollFailures = 0;
    await onTicket(ticket);
  }

  // The status box is a live region: it is rewritten only when what it says
  // changes, so a screen reader hears each new position once.
  async function onTicket(ticket) {
    const box = $('queue-status');
    if (ticket.status === 'WAITING') {
      const text = `You are number ${ticket.position} in line. Estimated wait: about ${duration(ticket.estimatedWaitSeconds)}.`;
      if (box.dataset.status !== 'WAITING' || $('queue-eta').textContent !== text) {
        const big = document.createElement('p');
        big.className = 'big';
        big.id = 'queue-position';
        big.textContent = `#${ticket.position}`;
        const eta = document.createElement('p');
        eta.id = 'queue-eta';
        eta.textContent = text;
        box.replaceChildren(big, eta);
        box.dataset.status = 'WAITING';
      }
      later('queue', queuePollMs(ticket), pollQueue);
      return;
    }
    state.activeUntil = Date.parse(ticket.activeUntil);
    box.dataset.status = 'ACTIVE';
    const p = document.createElement('p');
    p.id = 'queue-active';
    p.textContent = "You're in! Choose your seats below.";
    box.replaceChildren(p);
    $('session-line').hidden = false;
    tickSession();
    stop('session');
    timers.session = setInterval(tickSession, 1000);
    await enterBooking();
  }

  function tickSession() {
    const left = state.activeUntil - serverNow();
    $('session-left').textContent = mmss(left);
    if (left <= 0) lineEnded('Your session is over. Join the line again to keep booking.');
  }

  // The queue token is gone (expired, left, or used by a payment).
  function lineEnded(message) {
    stop('queue');
    stop('session');
    stop('seats');
    state.queueToken = null;
    store.del('queueToken');
    bookingEntered = false;
    hide('step-seats');
    const box = $('queue-status');
    box.dataset.status = 'ENDED';
    box.textContent = message;
    $('session-line').hidden = true;
    $('join').hidden = false;
    show('step-queue');
  }

  function signOut() {
    for (const key of ['user', 'queueToken', 'hold']) store.del(key);
    location.reload();
  }

  // ---- 3. dates and seats --------------------------------------------------

  let bookingEntered = false;
  async function enterBooking() {
    show('step-seats', !bookingEntered);
    if (bookingEntered) return;
    bookingEntered = true;
    try {
      const { items } = await api('GET', '/v1/concerts', { token: state.queueToken });
      state.concerts = items;
      const select = $('concert');
      select.replaceChildren(...items.map((c) => new Option(c.title, c.concertId)));
      if (state.hold) {
        const owner = await concertOfSchedule(state.hold.scheduleId);
        if (owner) select.value = owner;
      }
      await loadSchedules();
    } catch (e) {
      bookingEntered = false;
      showProblem(e);
    }
  }

  async function concertOfSchedule(scheduleId) {
    for (const c of state.concerts) {
      const { items } = await api('GET', `/v1/concerts/${c.concertId}/schedules`, { token: state.queueToken });
      if (items.some((s) => s.scheduleId === scheduleId)) return String(c.concertId);
    }
    return null;
  }

  async function loadSchedules() {
    const concertId = $('concert').value;
    if (!concertId) return;
    const { items } = await api('GET', `/v1/concerts/${encodeURIComponent(concertId)}/schedules`, { token: state.queueToken });
    state.schedules = items;
    const select = $('schedule');
    select.replaceChildren(...items.map((s) => {
      const opt = new Option(scheduleLabel(s, s.availableSeats), s.scheduleId);
      opt.disabled = !s.bookingOpen;
      return opt;
    }));
    const preferred = state.hold && items.find((s) => s.scheduleId === state.hold.scheduleId);
    const first = preferred || items.find((s) => s.bookingOpen) || items[0];
    if (first) select.value = String(first.scheduleId);
    chooseSchedule();
  }

  function scheduleLabel(s, free) {
    return s.bookingOpen ? `${when(s.startsAt)} · ${free} of ${s.totalSeats} free` : `${when(s.startsAt)} · not open`;
  }

  // Keeps the chosen date's "n free" in step with the map.
  function renderFreeCount() {
    const s = state.schedules.find((x) => x.scheduleId === state.scheduleId);
    const opt = $('schedule').selectedOptions[0];
    if (!s || !opt) return;
    const free = [...state.seats.values()].filter((status) => status === 'AVAILABLE').length;
    opt.textContent = scheduleLabel(s, free);
  }

  function chooseSchedule() {
    const id = Number($('schedule').value);
    if (!id) return;
    if (id !== state.scheduleId) {
      state.scheduleId = id;
      state.selected.clear();
      state.seats.clear();
      buildSeatMap();
    }
    refreshSeats();
  }

  // Fifty buttons, built once per date; a refresh only updates attributes, so
  // keyboard focus stays where it is. One tab stop (roving tabindex): the
  // arrow keys move between seats, Space or Enter selects.
  function buildSeatMap() {
    const map = $('seat-map');
    map.replaceChildren();
    for (let n = 1; n <= 50; n += 1) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'seat';
      b.textContent = String(n);
      b.dataset.seat = String(n);
      b.dataset.status = 'AVAILABLE';
      b.setAttribute('aria-pressed', 'false');
      b.tabIndex = n === 1 ? 0 : -1;
      map.append(b);
    }
    map.setAttribute('aria-busy', 'true');
    renderSelection();
  }

  function seatButton(n) {
    return $('seat-map').querySelector(`button[data-seat="${n}"]`);
  }

  function mySeats() {
    return state.hold && state.hold.scheduleId === state.scheduleId ? state.hold.seatNumbers : [];
  }

  async function refreshSeats() {
    stop('seats');
    const scheduleId = state.scheduleId;
    if (!scheduleId || !state.queueToken) return;
    try {
      const { items } = await api('GET', `/v1/schedules/${scheduleId}/seats`, { token: state.queueToken });
      if (scheduleId !== state.scheduleId) return;
      for (const seat of items) state.seats.set(seat.number, seat.status);
      renderSeats();
      renderFreeCount();
      $('seat-map-updated').textContent = `Updated ${new Date().toLocaleTimeString()}. Refreshes every few seconds.`;
    } catch (e) {
      if (e.status === 401) {
        lineEnded('Your session is over. Join the line again to keep booking.');
        return;
      }
      showProblem(e);
    }
    if (!document.hidden) later('seats', SEAT_REFRESH_MS, refreshSeats);
  }

  function renderSeats() {
    const mine = new Set(mySeats());
    const dropped = [];
    for (const [n, status] of state.seats) {
      const b = seatButton(n);
      if (!b) continue;
      const shown = mine.has(n) && status !== 'AVAILABLE' ? 'MINE' : status;
      const free = shown === 'AVAILABLE';
      if (!free && state.selected.delete(n)) dropped.push(n);
      b.dataset.status = shown;
      b.setAttribute('aria-disabled', String(!free));
      b.setAttribute('aria-pressed', String(state.selected.has(n)));
      const word = { AVAILABLE: 'available', HELD: 'held', SOLD: 'sold', MINE: 'yours' }[shown] || shown;
      b.setAttribute('aria-label', `Seat ${n}, ${state.selected.has(n) ? 'selected' : word}`);
    }
    $('seat-map').setAttribute('aria-busy', 'false');
    renderSelection(dropped.length ? `${capital(seatList(dropped))} just became unavailable.` : '');
  }

  function renderSelection(note) {
    const seats = [...state.selected].sort((a, b) => a - b);
    const price = (state.schedules.find((s) => s.scheduleId === state.scheduleId) || {}).seatPrice;
    const holding = Boolean(state.hold);
    let text = seats.length
      ? `Selected ${seatList(seats)}${price ? ` — ${won(price * seats.length)}` : ''}.`
      : 'No seats selected.';
    if (holding) text = `You hold ${seatList(state.hold.seatNumbers)}: pay for it below (or let the hold run out) before choosing more.`;
    if (note) text = `${note} ${text}`;
    $('selection').textContent = text;
    $('reserve').disabled = Boolean(state.reserving) || holding || seats.length === 0;
    $('reserve').textContent = seats.length && !holding ? `Reserve ${seatList(seats)}` : 'Reserve';
  }

  // The seat last used is the map's one tab stop.
  function makeTabStop(b) {
    for (const other of $('seat-map').querySelectorAll('.seat[tabindex="0"]')) other.tabIndex = -1;
    b.tabIndex = 0;
  }

  function toggleSeat(b) {
    const n = Number(b.dataset.seat);
    makeTabStop(b);
    if (b.getAttribute('aria-disabled') === 'true') return;
    if (state.selected.has(n)) {
      state.selected.delete(n);
    } else if (state.selected.size >= MAX_SEATS) {
      renderSelection(`You can choose up to ${MAX_SEATS} seats.`);
      return;
    } else {
      state.selected.add(n);
    }
    renderSeats();
  }

  function seatKeys(event) {
    const b = event.target.closest('.seat');
    if (!b) return;
    const n = Number(b.dataset.seat);
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -10, ArrowDown: 10, Home: 1 - n, End: 50 - n };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const target = Math.min(50, Math.max(1, n + moves[event.key]));
    const next = seatButton(target);
    makeTabStop(next);
    next.focus();
  }

  // ---- reserve -------------------------------------------------------------

  async function reserve() {
    const seats = [...state.selected].sort((a, b) => a - b);
    if (state.reserving || !seats.length) return; // a double click is one request, and one job
    clearError();
    const sig = `${state.scheduleId}:${seats.join(',')}`;
    // A retry of the same seats after a lost answer reuses the key (the same
    // job); a new choice after a final outcome gets a new one.
    const key = (state.lastReserve && state.lastReserve.sig === sig) ? state.lastReserve.key : newKey('web-reserve');
    state.reserving = { sig, key };
    state.lastReserve = state.reserving;
    renderSelection();
    busy($('reserve'), true);
    const status = $('job-status');
    status.className = 'job-status';
    status.textContent = `Asking for ${seatList(seats)}…`;
    try {
      const accepted = await unlessBusy(() => api('POST', '/v1/reservations', {
        token: state.queueToken,
        body: { scheduleId: state.scheduleId, seatNumbers: seats },
        idempotencyKey: key,
      }), status);
      status.textContent = `Request queued (job ${accepted.jobId.slice(0, 8)}…). Waiting for the outcome…`;
      status.dataset.jobId = accepted.jobId;
      const job = await settle(accepted.jobId, (j) => {
        status.textContent = j.status === 'RUNNING' ? 'Holding your seats…' : `Waiting for the outcome (${j.status.toLowerCase()})…`;
      });
      state.lastReserve = null;
      if (job.status === 'SUCCEEDED') {
        status.textContent = `Held ${seatList(job.result.seatNumbers)}: see Your hold below.`;
        state.selected.clear();
        startHold(job.result);
      } else {
        status.className = 'job-status failed';
        status.textContent = `Not held: ${job.error.code}.`;
        showError(job.error.code, job.error.message);
      }
    } catch (e) {
      status.textContent = '';
      showProblem(e);
      if (e.status && e.status < 500) state.lastReserve = null;
      if (e.status === 401) lineEnded('Your session is over. Join the line again to keep booking.');
    } finally {
      state.reserving = null;
      busy($('reserve'), false);
      renderSelection();
      refreshSeats();
    }
  }

  // A 429 (BUSY: too many jobs already waiting; TOO_MANY_JOBS: this fan has
  // enough of its own in flight; nothing was queued either way) is sent
  // again with the same key after its Retry-After, plus up to half a second of
  // jitter so a crowd told the same number does not come back in one instant.
  async function unlessBusy(send, status, tries = 5) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await send();
      } catch (e) {
        if (e.status !== 429 || attempt >= tries) throw e;
        const wait = retryDelay(e, attempt) + Math.floor(Math.random() * 500);
        status.textContent = `Very busy right now: asking again in ${Math.ceil(wait / 1000)} s…`;
        await pause(wait);
      }
    }
  }

  // ---- 4. the hold, the balance, payment -----------------------------------

  function startHold(hold) {
    state.hold = hold;
    store.set('hold', hold);
    const summary = $('hold-summary');
    summary.textContent = `${capital(seatList(hold.seatNumbers))} (${dateOf(hold.scheduleId)}) — ${won(hold.totalPrice)}. Pay before the hold runs out.`;
    summary.dataset.seats = hold.seatNumbers.join(',');
    $('pay').textContent = `Pay ${won(hold.totalPrice)}`;
    $('pay-status').textContent = '';
    show('step-hold', true);
    tickHold();
    stop('hold');
    timers.hold = setInterval(tickHold, 1000);
    loadBalance();
    renderSelection();
  }

  function dateOf(scheduleId) {
    const s = state.schedules.find((x) => x.scheduleId === scheduleId);
    return s ? when(s.startsAt) : `date ${scheduleId}`;
  }

  let lastAnnounced = null;
  function tickHold() {
    if (!state.hold) return;
    const left = Date.parse(state.hold.expiresAt) - serverNow();
    const el = $('countdown');
    el.textContent = mmss(left);
    el.classList.toggle('low', left < 60000);
    // Screen readers hear the minutes, not every second.
    const minute = Math.ceil(left / 60000);
    if (minute !== lastAnnounced && left > 0) {
      lastAnnounced = minute;
      $('countdown-sr').textContent = `About ${minute} minute${minute === 1 ? '' : 's'} left on your hold.`;
    }
    if (left <= 0) endHold('Your hold ran out and the seats were released. Pick seats again.');
  }

  function endHold(message) {
    stop('hold');
    state.hold = null;
    store.del('hold');
    hide('step-hold');
    const status = $('job-status');
    status.className = 'job-status failed';
    status.textContent = message;
    renderSelection();
    refreshSeats();
  }

  async function loadBalance() {
    try {
      const b = await api('GET', `/v1/users/${encodeURIComponent(state.user.userId)}/balance`, { token: state.user.accessToken });
      renderBalance(b.balance);
    } catch (e) {
      showProblem(e);
    }
  }

  function renderBalance(balance) {
    const out = $('balance');
    out.textContent = won(balance);
    out.dataset.balance = String(balance);
    if (state.hold && balance < state.hold.totalPrice) {
      const missing = state.hold.totalPrice - balance;
      if (!$('recharge-amount').value) $('recharge-amount').value = String(missing);
    }
  }

  async function recharge(event) {
    event.preventDefault();
    const input = $('recharge-amount');
    const amount = Number(input.value);
    // Only the obvious is checked here; the limits are the API's to say.
    if (!Number.isInteger(amount) || amount < 1) {
      showError('VALIDATION_FAILED', 'amount: enter a whole number of won');
      input.focus();
      return;
    }
    if (state.recharging) return;
    clearError();
    const key = (state.lastRecharge && state.lastRecharge.amount === amount) ? state.lastRecharge.key : newKey('web-recharge');
    state.recharging = { amount, key };
    state.lastRecharge = state.recharging;
    busy($('recharge'), true);
    const status = $('pay-status');
    status.className = 'job-status';
    status.textContent = `Topping up ${won(amount)}…`;
    try {
      const accepted = await api('POST', `/v1/users/${encodeURIComponent(state.user.userId)}/balance/recharges`, {
        token: state.user.accessToken,
        body: { amount },
        idempotencyKey: key,
      });
      const job = await settle(accepted.jobId, () => {});
      state.lastRecharge = null;
      if (job.status === 'SUCCEEDED') {
        status.textContent = `Topped up ${won(amount)}.`;
        input.value = '';
        renderBalance(job.result.balance);
      } else {
        status.className = 'job-status failed';
        status.textContent = `Top-up failed: ${job.error.code}.`;
        showError(job.error.code, job.error.message);
      }
    } catch (e) {
      status.textContent = '';
      showProblem(e);
      if (e.status && e.status < 500) state.lastRecharge = null;
    } finally {
      state.recharging = null;
      busy($('recharge'), false);
    }
  }

  async function pay() {
    if (state.paying || !state.hold) return;
    clearError();
    const hold = state.hold;
    const key = (state.lastPay && state.lastPay.reservationId === hold.reservationId) ? state.lastPay.key : newKey('web-pay');
    state.paying = { reservationId: hold.reservationId, key };
    state.lastPay = state.paying;
    busy($('pay'), true);
    const status = $('pay-status');
    status.className = 'job-status';
    status.textContent = 'Paying…';
    try {
      const accepted = await api('POST', '/v1/payments', {
        token: state.queueToken,
        body: { reservationId: hold.reservationId },
        idempotencyKey: key,
      });
      const job = await settle(accepted.jobId, () => {});
      state.lastPay = null;
      if (job.status === 'SUCCEEDED') {
        confirmed(hold, job.result);
        return;
      }
      status.className = 'job-status failed';
      status.textContent = `Not paid: ${job.error.code}.`;
      showError(job.error.code, job.error.message);
      if (job.error.code === 'INSUFFICIENT_BALANCE') {
        loadBalance();
        $('recharge-amount').focus();
      } else if (job.error.code === 'HOLD_EXPIRED' || job.error.code === 'RESERVATION_NOT_FOUND') {
        endHold('That hold is gone. Pick seats again.');
      } else if (job.error.code === 'ALREADY_PAID') {
        confirmed(hold, null);
      }
    } catch (e) {
      status.textContent = '';
      showProblem(e);
      if (e.status && e.status < 500) state.lastPay = null;
      if (e.status === 401) lineEnded('Your session in line is over, but your hold is still yours until it runs out: join again to pay.');
    } finally {
      state.paying = null;
      busy($('pay'), false);
    }
  }

  function confirmed(hold, payment) {
    stop('hold');
    state.hold = null;
    store.del('hold');
    // A successful payment ends the queue session: the next fan is let in.
    stop('queue');
    stop('session');
    stop('seats');
    state.queueToken = null;
    store.del('queueToken');
    bookingEntered = false;
    state.scheduleId = null;
    hide('step-hold');
    hide('step-seats');
    hide('step-queue');
    $('session-line').hidden = true;
    const concert = state.concerts.find((c) => String(c.concertId) === $('concert').value);
    const dl = document.createElement('dl');
    const rows = [
      ['Concert', concert ? concert.title : '—'],
      ['Date', dateOf(hold.scheduleId)],
      ['Seats', hold.seatNumbers.join(', ')],
      ['Paid', won(payment ? payment.amount : hold.totalPrice)],
    ];
    if (payment) {
      rows.push(['Balance left', won(payment.balance)]);
      rows.push(['Payment', payment.paymentId]);
    }
    rows.push(['Reservation', hold.reservationId]);
    for (const [k, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dl.append(dt, dd);
    }
    const box = $('confirmation');
    box.replaceChildren(dl);
    box.dataset.reservationId = hold.reservationId;
    box.dataset.seats = hold.seatNumbers.join(',');
    const note = document.createElement('p');
    note.textContent = 'Your place in line is released for the next fan.';
    box.append(note);
    show('step-done', true);
  }

  function again() {
    hide('step-done');
    const box = $('queue-status');
    box.replaceChildren();
    delete box.dataset.status;
    $('join').hidden = false;
    show('step-queue', true);
    $('join').focus();
  }

  // ---- start ---------------------------------------------------------------

  function wire() {
    $('signup-form').addEventListener('submit', signUp);
    $('join').addEventListener('click', join);
    $('concert').addEventListener('change', () => loadSchedules().catch(showProblem));
    $('schedule').addEventListener('change', chooseSchedule);
    $('seat-map').addEventListener('click', (e) => {
      const b = e.target.closest('.seat');
      if (b) toggleSeat(b);
    });
    $('seat-map').addEventListener('keydown', seatKeys);
    $('reserve').addEventListener('click', reserve);
    $('recharge-form').addEventListener('submit', recharge);
    $('pay').addEventListener('click', pay);
    $('again').addEventListener('click', again);
    $('error-dismiss').addEventListener('click', clearError);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && !$('step-seats').hidden) refreshSeats();
    });
  }

  function resume() {
    renderWho();
    if (!state.user) {
      show('step-signup');
      return;
    }
    hide('step-signup');
    show('step-queue');
    if (state.queueToken) {
      $('join').hidden = true;
      pollQueue().then(() => {
        if (state.hold) startHold(state.hold);
      });
    } else if (state.hold) {
      // A hold outlives the session: show it; paying needs a place in line again.
      startHold(state.hold);
    }
  }

  wire();
  resume();
})();
