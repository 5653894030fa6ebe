-- The reserve job's transaction, statement for statement as the worker sends
-- them (same round trips), for pgbench: the machine's own ceiling for it.
-- Run with -M prepared (the worker's statements are prepared: planning is paid
-- once per connection; variables are bound parameters, hence :rid unquoted).
-- Needs pgbench -D nseats=<seat count> -D nusers=<rows of pgbench_users>, and a
-- table pgbench_users(n, id) numbering the users 1..nusers (loadtest/run makes it):
-- each transaction is a random user's, as in the load test, so the per-person
-- count reads a short list. `(SELECT … FROM pgbench_users …)` stands where the
-- worker binds the user id: an uncorrelated subselect runs once per statement
-- (an index lookup), adding no statement and no round trip.
\set n random(1, :nseats)
\set u random(1, :nusers)
BEGIN;
-- `(SELECT gen_random_uuid())`, not `gen_random_uuid()`: a volatile function in
-- WHERE is evaluated once per row, which forces a sequential scan of the table;
-- as a subselect it is one value and the primary key is used, like the worker's
-- bound job id.
SELECT 1 FROM job_outcomes WHERE job_id = (SELECT gen_random_uuid());
-- The schedule, read while taking the per-person lock on (user, schedule).
SELECT s.id, s.booking_opens_at, s.booking_closes_at,
  (SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended('seat-limit|' || (SELECT id FROM pgbench_users WHERE n = :u) || '|' || s.id, 0))) l) AS locked
  FROM schedules s WHERE s.id = (SELECT schedule_id FROM seats WHERE id = :n);
-- The requested seat, and the user's live seats of the schedule, in one statement.
SELECT count(*) AS free,
  (SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
    WHERE r.user_id = (SELECT id FROM pgbench_users WHERE n = :u) AND r.schedule_id = (SELECT schedule_id FROM seats WHERE id = :n)
      AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.expires_at > now()))) AS owned
  FROM seats WHERE id = :n AND status = 'AVAILABLE' \gset
\if :free
INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version, job_id, created_at, updated_at)
  SELECT gen_random_uuid(), (SELECT id FROM pgbench_users WHERE n = :u), schedule_id, 'HELD', price, now() + interval '5 minutes', 0, gen_random_uuid(), now(), now()
  FROM seats WHERE id = :n RETURNING id AS rid, job_id AS jid \gset
-- Conditional like the worker's version check: a client that lost the seat to
-- another between its read and here writes no seat row (the worker would retry).
WITH held AS (
  UPDATE seats SET status = 'HELD', reservation_id = :rid, hold_expires_at = now() + interval '5 minutes', version = version + 1
  WHERE id = :n AND status = 'AVAILABLE' RETURNING id)
INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status) SELECT :rid, id, 'HELD' FROM held;
INSERT INTO job_outcomes (job_id, kind, user_id, status, result, accepted_at, finished_at)
  VALUES (:jid, 'RESERVE', (SELECT id FROM pgbench_users WHERE n = :u), 'SUCCEEDED', '{}', now(), now());
\else
INSERT INTO job_outcomes (job_id, kind, user_id, status, error_code, error_message, accepted_at, finished_at)
  VALUES (gen_random_uuid(), 'RESERVE', (SELECT id FROM pgbench_users WHERE n = :u), 'FAILED', 'SEAT_UNAVAILABLE', 'taken', now(), now());
\endif
COMMIT;
