-- A past sale's trail and a sale in progress, written into a freshly seeded database before it is
-- measured, identically into the service's and pgbench's (#28): every third
-- seeded seat was held once and expired (its reservation, link and job
-- outcome stay, the seat is AVAILABLE again), and a third as many reserves
-- failed. Without it the job tables are empty when ANALYZE looks at them, and
-- every prepared plan made then (sqlx and pgbench -M prepared keep theirs per
-- connection) seq-scans them as they grow: the ceiling moved 996 → 1,699 tps
-- between two back-to-back pgbench runs that way (docs/BENCHMARKS.md, #23).
-- Real tables carry history; the measured ones now do too.
CREATE TEMP TABLE past AS
  SELECT s.id AS seat_id, s.schedule_id, s.price, u.id AS user_id,
         gen_random_uuid() AS rid, gen_random_uuid() AS jid,
         now() - interval '1 day' + s.id * interval '10 ms' AS at
  FROM seats s
  JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users) u
    ON u.n = s.id % (SELECT count(*) FROM users)
  WHERE s.id % 3 = 0;

INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version, job_id, created_at, updated_at)
  SELECT rid, user_id, schedule_id, 'EXPIRED', price, at + interval '5 minutes', 1, jid, at, at + interval '5 minutes' FROM past;
INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status)
  SELECT rid, seat_id, 'EXPIRED' FROM past;
INSERT INTO job_outcomes (job_id, kind, user_id, status, result, accepted_at, finished_at)
  SELECT jid, 'RESERVE', user_id, 'SUCCEEDED',
         jsonb_build_object('reservationId', rid, 'scheduleId', schedule_id, 'seatIds', jsonb_build_array(seat_id)), at, at
  FROM past;
INSERT INTO job_outcomes (job_id, kind, user_id, status, error_code, error_message, accepted_at, finished_at)
  SELECT gen_random_uuid(), 'RESERVE', user_id, 'FAILED', 'SEAT_UNAVAILABLE', 'the seat is not available', at, at
  FROM past WHERE seat_id % 9 = 0;

-- And a sale in progress: every 21st seat is held now, by a hold that lasts a
-- day (so nothing of it falls due while a run measures). Without live holds
-- when ANALYZE looks, the partial index of live reservations reads as empty,
-- and the foreign-key checks of every hold (`SELECT 1 FROM reservations …
-- FOR KEY SHARE`) were planned on it, filtering 30,000 live entries per
-- check by the end of a pgbench run (auto_explain, #28).
CREATE TEMP TABLE live AS
  SELECT s.id AS seat_id, s.schedule_id, s.price, u.id AS user_id,
         gen_random_uuid() AS rid, gen_random_uuid() AS jid
  FROM seats s
  JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users) u
    ON u.n = (s.id / 21) % (SELECT count(*) FROM users)
  WHERE s.id % 21 = 1 AND s.status = 'AVAILABLE';

INSERT INTO reservations (id, user_id, schedule_id, status, total_price, expires_at, version, job_id, created_at, updated_at)
  SELECT rid, user_id, schedule_id, 'HELD', price, now() + interval '1 day', 0, jid, now(), now() FROM live;
UPDATE seats s SET status = 'HELD', reservation_id = l.rid, hold_expires_at = now() + interval '1 day', version = s.version + 1
  FROM live l WHERE s.id = l.seat_id;
INSERT INTO reservation_seats (reservation_id, seat_id, reservation_status)
  SELECT rid, seat_id, 'HELD' FROM live;
INSERT INTO job_outcomes (job_id, kind, user_id, status, result, accepted_at, finished_at)
  SELECT jid, 'RESERVE', user_id, 'SUCCEEDED',
         jsonb_build_object('reservationId', rid, 'scheduleId', schedule_id, 'seatIds', jsonb_build_array(seat_id)), now(), now()
  FROM live;
