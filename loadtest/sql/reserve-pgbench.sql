-- The reserve job's transaction, statement for statement as the worker sends
-- them (same round trips), for pgbench: the machine's own ceiling for it.
-- Needs pgbench -D nseats=<seat count> -D user=<a user id>.
\set n random(1, :nseats)
BEGIN;
SELECT 1 FROM job_outcomes WHERE job_id = gen_random_uuid();
SELECT id, booking_opens_at, booking_closes_at FROM schedules WHERE id = (SELECT schedule_id FROM seats WHERE id = :n);
SELECT count(*) AS free FROM seats WHERE id = :n AND status = 'AVAILABLE' \gset
\if :free
INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version, job_id, created_at, updated_at)
  SELECT gen_random_uuid(), ':user', schedule_id, 'HELD', price, now() + interval '5 minutes', 0, gen_random_uuid(), now(), now()
  FROM seats WHERE id = :n RETURNING id AS rid, job_id AS jid \gset
-- Conditional like the worker's version check: a client that lost the seat to
-- another between its read and here writes no seat row (the worker would retry).
WITH held AS (
  UPDATE seats SET status = 'HELD', reservation_id = ':rid', hold_expires_at = now() + interval '5 minutes', version = version + 1
  WHERE id = :n AND status = 'AVAILABLE' RETURNING id)
INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status) SELECT ':rid', id, 'HELD' FROM held;
INSERT INTO job_outcomes (job_id, kind, user_id, status, result, accepted_at, finished_at)
  VALUES (':jid', 'RESERVE', ':user', 'SUCCEEDED', '{}', now(), now());
\else
INSERT INTO job_outcomes (job_id, kind, user_id, status, error_code, error_message, accepted_at, finished_at)
  VALUES (gen_random_uuid(), 'RESERVE', ':user', 'FAILED', 'SEAT_UNAVAILABLE', 'taken', now(), now());
\endif
COMMIT;
