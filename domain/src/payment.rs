//! Paying a held reservation from the balance.
//!
//! One transaction: the reservation moves HELD→CONFIRMED only at the version
//! read and only while unexpired, the wallet is debited only at its version and
//! only if it covers the price, the seats move HELD→SOLD, and a ledger row, a
//! payment row and the outcome are written. Expiry's conditional update on the
//! same reservation row means pay and expiry can never both win.

use chrono::Utc;
use entity::{payments, reservation_seats, reservations, seats, wallets};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{
    error::Result,
    jobs::{JobKind, Outcome, PayJob},
    retry::{self, Attempt},
    wallet,
};

/// Runs a pay job: idempotent per job id.
pub async fn pay(db: &DatabaseConnection, job: &PayJob) -> Result<Outcome> {
    retry::optimistic(db, job.job_id, || try_pay(db, job)).await
}

async fn try_pay(db: &DatabaseConnection, job: &PayJob) -> Result<Attempt> {
    let txn = db.begin().await?;
    let finish = |txn, outcome| {
        retry::finish(
            txn,
            job.job_id,
            JobKind::Pay,
            job.user_id,
            job.accepted_at,
            outcome,
        )
    };
    // PostgreSQL's clock judges the hold: the same clock the expiry uses, read in
    // this transaction (not before waiting for a pooled connection).
    let found = crate::platform::db::one_with_now::<reservations::Model>(
        &txn,
        "SELECT r.*, now() AS db_now FROM reservations r WHERE r.id = $1",
        [job.reservation_id.into()],
    )
    .await?
    .filter(|(r, _)| r.user_id == job.user_id);
    let Some((reservation, now)) = found else {
        // Someone else's reservation reads exactly like a missing one.
        let message = format!("reservation {} was not found", job.reservation_id);
        return finish(txn, Outcome::failed("RESERVATION_NOT_FOUND", message)).await;
    };
    if reservation.status == "CONFIRMED" {
        return finish(
            txn,
            Outcome::failed("ALREADY_PAID", "this reservation is already paid"),
        )
        .await;
    }
    if reservation.status != "HELD" || reservation.expires_at <= now {
        let message = format!(
            "the hold expired at {}; reserve again",
            reservation.expires_at.to_rfc3339()
        );
        return finish(txn, Outcome::failed("HOLD_EXPIRED", message)).await;
    }
    let price = reservation.total_price;
    let wallet = wallets::Entity::find_by_id(job.user_id).one(&txn).await?;
    let (balance, version) = wallet.map_or((0, 0), |w| (w.balance, w.version));
    if balance < price {
        let message = format!("the balance of {balance} won does not cover {price} won");
        return finish(txn, Outcome::failed("INSUFFICIENT_BALANCE", message)).await;
    }
    let confirmed = reservations::Entity::update_many()
        .col_expr(reservations::Column::Status, Expr::value("CONFIRMED"))
        .col_expr(
            reservations::Column::Version,
            Expr::col(reservations::Column::Version).add(1),
        )
        .col_expr(reservations::Column::UpdatedAt, Expr::value(now))
        .filter(reservations::Column::Id.eq(reservation.id))
        .filter(reservations::Column::Status.eq("HELD"))
        .filter(reservations::Column::Version.eq(reservation.version))
        .filter(reservations::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    if confirmed.rows_affected != 1
        || !wallet::debit_or_credit(&txn, job.user_id, version, -price).await?
    {
        txn.rollback().await?;
        return Ok(Attempt::Conflict);
    }
    let sold = seats::Entity::update_many()
        .col_expr(seats::Column::Status, Expr::value("SOLD"))
        .col_expr(
            seats::Column::HoldExpiresAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            seats::Column::Version,
            Expr::col(seats::Column::Version).add(1),
        )
        // Found through reservation_seats' primary key: `seats.reservation_id`
        // has no index (one would cost the seats' HOT updates), and this filter
        // alone read every seat per payment — 138.6 M rows in the load test's
        // 1,230 journeys (loadtest/run's seqscans.txt, #28).
        .filter(
            seats::Column::Id.in_subquery(
                Query::select()
                    .column(reservation_seats::Column::SeatId)
                    .from(reservation_seats::Entity)
                    .and_where(reservation_seats::Column::ReservationId.eq(reservation.id))
                    .to_owned(),
            ),
        )
        .filter(seats::Column::ReservationId.eq(reservation.id))
        .filter(seats::Column::Status.eq("HELD"))
        .exec(&txn)
        .await?;
    if sold.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(Attempt::Conflict);
    }
    let after = balance - price;
    wallet::ledger(&txn, job.user_id, "PAYMENT", -price, after, job.job_id).await?;
    let payment_id = Uuid::now_v7();
    payments::Entity::insert(payments::ActiveModel {
        id: Set(payment_id),
        reservation_id: Set(reservation.id),
        user_id: Set(job.user_id),
        amount: Set(price),
        job_id: Set(job.job_id),
        created_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    let result = serde_json::json!({
        "paymentId": payment_id,
        "reservationId": reservation.id,
        "amount": price,
        "balance": after,
    });
    finish(txn, Outcome::Succeeded(result)).await
}
