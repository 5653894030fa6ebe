//! The endpoint groups, one module per OpenAPI tag: extract, validate, call
//! `domain`, map the result. HTTP plumbing they share lives in `crate::http`.

pub mod admin;
pub mod balance;
pub mod catalog;
pub mod jobs;
pub mod ops;
pub mod ops_snapshot;
pub mod payments;
pub mod reservations;
pub mod tags;
pub mod users;
pub mod waiting_room;

/// Every endpoint group, in Swagger UI order.
pub type Apis = (
    users::UsersApi,
    waiting_room::WaitingRoomApi,
    catalog::CatalogApi,
    reservations::ReservationsApi,
    payments::PaymentsApi,
    balance::BalanceApi,
    jobs::JobsApi,
    admin::AdminApi,
    ops_snapshot::OpsSnapshotApi,
    ops::OpsApi,
);
