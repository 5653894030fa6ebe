-- Each row is one invariant and the number of rows breaking it: all must be 0.
SELECT 'seat in two live reservations' AS invariant, count(*) AS violations FROM (
  SELECT seat_id FROM reservation_seats WHERE reservation_status IN ('HELD', 'CONFIRMED') GROUP BY seat_id HAVING count(*) > 1) d
UNION ALL
SELECT 'held/sold seat not owned by a live reservation listing it', count(*) FROM seats s
  WHERE s.status <> 'AVAILABLE' AND NOT EXISTS (
    SELECT 1 FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
    WHERE rs.seat_id = s.id AND r.id = s.reservation_id AND r.status IN ('HELD', 'CONFIRMED'))
UNION ALL
SELECT 'sold seat without exactly one payment', count(*) FROM seats s
  WHERE s.status = 'SOLD' AND (SELECT count(*) FROM payments p WHERE p.reservation_id = s.reservation_id) <> 1
UNION ALL
SELECT 'balance differs from its ledger', count(*) FROM wallets w
  WHERE w.balance <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries l WHERE l.user_id = w.user_id)
UNION ALL
SELECT 'payment of a reservation that is not confirmed', count(*) FROM payments p
  JOIN reservations r ON r.id = p.reservation_id WHERE r.status <> 'CONFIRMED'
UNION ALL
SELECT 'reservation without an outcome of its job', count(*) FROM reservations r
  WHERE NOT EXISTS (SELECT 1 FROM job_outcomes o WHERE o.job_id = r.job_id);
