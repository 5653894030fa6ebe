//! Fans' accounts: sign-up and lookup. Every user gets a wallet at sign-up so
//! later balance changes are always plain conditional updates.

use chrono::{DateTime, Utc};
use entity::{users, wallets};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, TransactionTrait,
};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest accepted display name, in characters (matches `users_name_length`).
pub const MAX_NAME_CHARS: usize = 100;

/// A user as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for User {
    fn from(m: users::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            created_at: m.created_at,
        }
    }
}

/// Trims and checks a display name: 1..=100 characters, no control characters.
pub fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be blank"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Signs a fan up: one user row and an empty wallet, atomically.
pub async fn create_user(db: &DatabaseConnection, name: &str) -> Result<User> {
    let name = validate_name(name)?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let txn = db.begin().await?;
    let user = users::Entity::insert(users::ActiveModel {
        id: Set(id),
        name: Set(name),
        created_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    wallets::Entity::insert(wallets::ActiveModel {
        user_id: Set(id),
        balance: Set(0),
        version: Set(0),
        updated_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(user.into())
}

/// Looks a user up; unknown → [`Error::NotFound`].
pub async fn get_user(db: &impl ConnectionTrait, id: Uuid) -> Result<User> {
    users::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(User::from)
        .ok_or_else(|| Error::not_found("user", id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        assert_eq!(validate_name("  Kim  ").expect("valid"), "Kim");
    }

    #[test]
    fn blank_long_and_control_names_are_refused() {
        for bad in ["", "   ", &"x".repeat(MAX_NAME_CHARS + 1), "a\u{0}b"] {
            match validate_name(bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "name"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_hundred_multibyte_characters_fit() {
        assert!(validate_name(&"가".repeat(MAX_NAME_CHARS)).is_ok());
    }
}
