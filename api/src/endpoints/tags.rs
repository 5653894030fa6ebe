//! OpenAPI tags: one per group of endpoints in Swagger UI.

use poem_openapi::Tags;

/// Groups of the API.
#[derive(Debug, Tags)]
pub enum Tag {
    /// Fans sign up and look themselves up.
    Users,
    /// The waiting room: get in line, poll, leave.
    WaitingRoom,
    /// Operator endpoints (admin bearer token).
    Admin,
    /// Concerts, dates and seats.
    Catalog,
    /// Holding seats (queued jobs) and reading reservations.
    Reservations,
    /// Paying held reservations (queued jobs).
    Payments,
    /// Balances and queued recharges.
    Balance,
    /// Status of queued jobs, with long-polling.
    Jobs,
    /// Liveness and readiness.
    Ops,
}
