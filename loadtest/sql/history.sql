-- A past sale's trail and a sale in progress, written into a freshly seeded
-- database before it is measured, identically into the service's and
-- pgbench's (#28).
--
-- The trail: every third seeded seat was held once and expired (its
-- reservation, link and job outcome stay, the seat is AVAILABLE again), and a
-- third as many reserves failed. Without it the job tables are empty when
-- ANALYZE looks at them, and every prepared plan made then (sqlx and pgbench
-- -M prepared keep theirs per connection) seq-scans them as they grow: the
-- ceiling moved 996 → 1,699 tps between two back-to-back pgbench runs that
-- way (docs/BENCHMARKS.md, #23).
--
-- The sale in progress: every 21st seat is held now, by a hold that lasts a
-- day (so nothing of it falls due while a run measures). Without live holds
-- when ANALYZE looks, the partial index of live reservations reads as empty,
-- and the foreign-key checks of every hold (`SELECT 1 FROM reservations …
-- FOR KEY SHARE`) were planned on it, filtering 30,000 live entries per check
-- by the end of a pgbench run (auto_explain, #28).
CREATE TEMP TABLE fans AS
  SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users;

-- One row per hold: the expired trail, then the live holds.
CREATE TEMP TABLE holds AS
  SELECT s.id AS seat_id, s.schedule_id, s.price, f.id AS user_id,
         gen_random_uuid() AS rid, gen_random_uuid() AS jid, 'EXPIRED' AS status,
         now() - interval '1 day' + s.id * interval '10 ms' AS at,
         now() - interval '1 day' + s.id * interval '10 ms' + interval '5 minutes' AS expires_at
  FROM seats s JOIN fans f ON f.n = s.id % (SELECT count(*) FROM fans)
  WHERE s.id % 3 = 0
  UNION ALL
  SELECT s.id, s.schedule_id, s.price, f.id, gen_random_uuid(), gen_random_uuid(), 'HELD',
         now(), now() + interval '1 day'
  FROM seats s JOIN fans f ON f.n = (s.id / 21) % (SELECT count(*) FROM fans)
  WHERE s.id % 21 = 1 AND s.status = 'AVAILABLE';

INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version, job_id, created_at, updated_at)
  SELECT rid, user_id, schedule_id, status, price, expires_at, CASE status WHEN 'EXPIRED' THEN 1 ELSE 0 END, jid, at,
         CASE status WHEN 'EXPIRED' THEN expires_at ELSE at END
  FROM holds;
UPDATE seats s SET status = 'HELD', reservation_id = h.rid, hold_expires_at = h.expires_at, version = s.version + 1
  FROM holds h WHERE s.id = h.seat_id AND h.status = 'HELD';
INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status)
  SELECT rid, seat_id, status FROM holds;
INSERT INTO job_outcomes (job_id, kind, user_id, status, result, accepted_at, finished_at)
  SELECT jid, 'RESERVE', user_id, 'SUCCEEDED',
         jsonb_build_object('reservationId', rid, 'scheduleId', schedule_id, 'seatIds', jsonb_build_array(seat_id)), at, at
  FROM holds;
INSERT INTO job_outcomes (job_id, kind, user_id, status, error_code, error_message, accepted_at, finished_at)
  SELECT gen_random_uuid(), 'RESERVE', user_id, 'FAILED', 'SEAT_UNAVAILABLE', 'the seat is not available', at, at
  FROM holds WHERE status = 'EXPIRED' AND seat_id % 9 = 0;
