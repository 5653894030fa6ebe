//! Balances and the ledger: every change is one ledger row carrying the balance
//! after it, written in the same transaction as the version-checked update of
//! the wallet, so the ledger and the balance always agree.

use chrono::Utc;
use entity::{ledger_entries, wallets};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    jobs::{JobKind, Outcome, RechargeJob},
    retry::{self, Attempt},
    wallet_limits::{MAX_BALANCE, MAX_RECHARGE},
};

/// Checks a recharge amount: 1..=10,000,000 won.
pub fn validate_amount(amount: i64) -> Result<i64> {
    if (1..=MAX_RECHARGE).contains(&amount) {
        Ok(amount)
    } else {
        Err(Error::invalid(
            "amount",
            format!("must be between 1 and {MAX_RECHARGE} won"),
        ))
    }
}

/// A user's balance; unknown user → not found.
pub async fn balance(db: &impl ConnectionTrait, user_id: Uuid) -> Result<i64> {
    wallets::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(|w| w.balance)
        .ok_or_else(|| Error::not_found("user", user_id))
}

/// Runs a recharge job: idempotent per job id, optimistic on the wallet version.
pub async fn recharge(db: &DatabaseConnection, job: &RechargeJob) -> Result<Outcome> {
    retry::optimistic(db, job.job_id, || try_recharge(db, job)).await
}

async fn try_recharge(db: &DatabaseConnection, job: &RechargeJob) -> Result<Attempt> {
    let txn = db.begin().await?;
    let finish = |txn, outcome| {
        retry::finish(
            txn,
            job.job_id,
            JobKind::Recharge,
            job.user_id,
            job.accepted_at,
            outcome,
        )
    };
    let Some(wallet) = wallets::Entity::find_by_id(job.user_id).one(&txn).await? else {
        let outcome = Outcome::failed(
            "USER_NOT_FOUND",
            format!("user {} does not exist", job.user_id),
        );
        return finish(txn, outcome).await;
    };
    let Some(after) = wallet
        .balance
        .checked_add(job.amount)
        .filter(|b| *b <= MAX_BALANCE)
    else {
        let message = format!("the balance may not exceed {MAX_BALANCE} won");
        let outcome = Outcome::failed("BALANCE_LIMIT_EXCEEDED", message);
        return finish(txn, outcome).await;
    };
    if !debit_or_credit(&txn, job.user_id, wallet.version, job.amount).await? {
        txn.rollback().await?;
        return Ok(Attempt::Conflict);
    }
    ledger(&txn, job.user_id, "RECHARGE", job.amount, after, job.job_id).await?;
    let outcome = Outcome::Succeeded(serde_json::json!({ "balance": after }));
    finish(txn, outcome).await
}

/// Adds `delta` (negative to debit) to the wallet if it is still at `version`.
pub(crate) async fn debit_or_credit(
    db: &impl ConnectionTrait,
    user: Uuid,
    version: i64,
    delta: i64,
) -> Result<bool> {
    let updated = wallets::Entity::update_many()
        .col_expr(
            wallets::Column::Balance,
            Expr::col(wallets::Column::Balance).add(delta),
        )
        .col_expr(
            wallets::Column::Version,
            Expr::col(wallets::Column::Version).add(1),
        )
        .col_expr(wallets::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(wallets::Column::UserId.eq(user))
        .filter(wallets::Column::Version.eq(version))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Appends one ledger row.
pub(crate) async fn ledger(
    db: &impl ConnectionTrait,
    user: Uuid,
    kind: &str,
    amount: i64,
    after: i64,
    job: Uuid,
) -> Result<()> {
    ledger_entries::Entity::insert(ledger_entries::ActiveModel {
        user_id: Set(user),
        kind: Set(kind.to_owned()),
        amount: Set(amount),
        balance_after: Set(after),
        job_id: Set(Some(job)),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recharge_amounts_are_bounded() {
        assert_eq!(validate_amount(1).expect("valid"), 1);
        assert_eq!(validate_amount(MAX_RECHARGE).expect("valid"), MAX_RECHARGE);
        for bad in [0, -1, MAX_RECHARGE + 1, i64::MAX] {
            assert!(
                matches!(validate_amount(bad), Err(Error::Invalid { field, .. }) if field == "amount")
            );
        }
    }
}
