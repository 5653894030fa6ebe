//! Money limits shared by validation, seeding and the schema's CHECKs.

/// Most won one recharge may add.
pub const MAX_RECHARGE: i64 = 10_000_000;
/// Highest balance a wallet may hold (matches `wallets_balance_limit`), far below `i64::MAX`
/// so no sum of a balance and a recharge can overflow.
pub const MAX_BALANCE: i64 = 1_000_000_000_000;
