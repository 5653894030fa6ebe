//! The initial schema: accounts, wallets and ledger, catalog, seats, reservations,
//! payments and durable job outcomes.

use sea_orm_migration::prelude::*;

const UP: &str = r#"
CREATE TABLE users (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CONSTRAINT users_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One wallet per user. `version` is the optimistic-lock column; the CHECKs make
-- a negative or absurd balance impossible whatever the application does.
CREATE TABLE wallets (
    user_id     uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    balance     bigint NOT NULL DEFAULT 0
                CONSTRAINT wallets_balance_non_negative CHECK (balance >= 0)
                CONSTRAINT wallets_balance_limit CHECK (balance <= 1000000000000),
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every balance change is one row; `job_id` makes a job's money effect unique.
CREATE TABLE ledger_entries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES wallets(user_id) ON DELETE CASCADE,
    kind           text NOT NULL CONSTRAINT ledger_entries_kind CHECK (kind IN ('SEED', 'RECHARGE', 'PAYMENT')),
    amount         bigint NOT NULL CONSTRAINT ledger_entries_amount_sign CHECK ((kind = 'PAYMENT' AND amount < 0) OR (kind <> 'PAYMENT' AND amount > 0)),
    balance_after  bigint NOT NULL CONSTRAINT ledger_entries_balance_after_non_negative CHECK (balance_after >= 0),
    job_id         uuid CONSTRAINT ledger_entries_job_unique UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_user_idx ON ledger_entries (user_id, id);

CREATE TABLE concerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL CONSTRAINT concerts_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedules (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    concert_id         bigint NOT NULL REFERENCES concerts(id) ON DELETE CASCADE,
    starts_at          timestamptz NOT NULL,
    booking_opens_at   timestamptz NOT NULL,
    booking_closes_at  timestamptz NOT NULL,
    seat_price         bigint NOT NULL CONSTRAINT schedules_seat_price_range CHECK (seat_price BETWEEN 1 AND 10000000),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_booking_window CHECK (booking_opens_at < booking_closes_at AND booking_closes_at <= starts_at)
);
CREATE INDEX schedules_concert_idx ON schedules (concert_id, starts_at);

-- Seats 1..50 of a schedule. `status`, `reservation_id` and `hold_expires_at`
-- must agree (seats_state); `version` is the optimistic-lock column.
CREATE TABLE seats (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id      bigint NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    number           smallint NOT NULL CONSTRAINT seats_number_range CHECK (number BETWEEN 1 AND 50),
    price            bigint NOT NULL CONSTRAINT seats_price_positive CHECK (price > 0),
    status           text NOT NULL DEFAULT 'AVAILABLE' CONSTRAINT seats_status CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
    reservation_id   uuid,
    hold_expires_at  timestamptz,
    version          bigint NOT NULL DEFAULT 0,
    CONSTRAINT seats_schedule_number_unique UNIQUE (schedule_id, number),
    CONSTRAINT seats_state CHECK (
        (status = 'AVAILABLE' AND reservation_id IS NULL AND hold_expires_at IS NULL)
        OR (status = 'HELD' AND reservation_id IS NOT NULL AND hold_expires_at IS NOT NULL)
        OR (status = 'SOLD' AND reservation_id IS NOT NULL AND hold_expires_at IS NULL))
);

CREATE TABLE reservations (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users(id),
    schedule_id  bigint NOT NULL REFERENCES schedules(id),
    status       text NOT NULL CONSTRAINT reservations_status CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED')),
    total_price  bigint NOT NULL CONSTRAINT reservations_total_price_positive CHECK (total_price > 0),
    expires_at   timestamptz NOT NULL,
    version      bigint NOT NULL DEFAULT 0,
    job_id       uuid NOT NULL CONSTRAINT reservations_job_unique UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Target of reservation_seats' cascading key, so each seat row knows whether
    -- its reservation is live.
    CONSTRAINT reservations_id_status_unique UNIQUE (id, status)
);
CREATE INDEX reservations_held_expiry_idx ON reservations (expires_at) WHERE status = 'HELD';
CREATE INDEX reservations_user_idx ON reservations (user_id, created_at);

ALTER TABLE seats ADD CONSTRAINT seats_reservation_fk FOREIGN KEY (reservation_id) REFERENCES reservations(id);

-- The seats of a reservation. `reservation_status` follows the reservation's
-- status through ON UPDATE CASCADE, and the partial unique index then refuses a
-- seat in two live (held or confirmed) reservations at the database level.
CREATE TABLE reservation_seats (
    reservation_id      uuid NOT NULL,
    seat_id             bigint NOT NULL REFERENCES seats(id),
    reservation_status  text NOT NULL,
    PRIMARY KEY (reservation_id, seat_id),
    CONSTRAINT reservation_seats_reservation_fk FOREIGN KEY (reservation_id, reservation_status)
        REFERENCES reservations(id, status) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE UNIQUE INDEX reservation_seats_one_live_per_seat ON reservation_seats (seat_id)
    WHERE reservation_status IN ('HELD', 'CONFIRMED');

CREATE TABLE payments (
    id              uuid PRIMARY KEY,
    reservation_id  uuid NOT NULL CONSTRAINT payments_reservation_unique UNIQUE REFERENCES reservations(id),
    user_id         uuid NOT NULL REFERENCES users(id),
    amount          bigint NOT NULL CONSTRAINT payments_amount_positive CHECK (amount > 0),
    job_id          uuid NOT NULL CONSTRAINT payments_job_unique UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The durable, final outcome of every job, written in the job's own transaction.
-- The primary key makes "two outcomes (and so two effects) of one job" impossible.
CREATE TABLE job_outcomes (
    job_id         uuid PRIMARY KEY,
    kind           text NOT NULL CONSTRAINT job_outcomes_kind CHECK (kind IN ('RESERVE', 'RECHARGE', 'PAY')),
    user_id        uuid REFERENCES users(id),
    status         text NOT NULL CONSTRAINT job_outcomes_status CHECK (status IN ('SUCCEEDED', 'FAILED')),
    result         jsonb,
    error_code     text,
    error_message  text,
    accepted_at    timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_outcomes_shape CHECK (
        (status = 'SUCCEEDED' AND result IS NOT NULL AND error_code IS NULL)
        OR (status = 'FAILED' AND error_code IS NOT NULL))
);
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS job_outcomes, payments, reservation_seats;
ALTER TABLE IF EXISTS seats DROP CONSTRAINT IF EXISTS seats_reservation_fk;
DROP TABLE IF EXISTS reservations, seats, schedules, concerts, ledger_entries, wallets, users;
"#;

crate::sql_migration!(UP, DOWN);
