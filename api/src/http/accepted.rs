//! The 202 answer shared by every enqueueing endpoint.

use poem_openapi::{ApiResponse, Object, payload::Json};
use uuid::Uuid;

/// An accepted job: poll `statusUrl` (optionally with `?waitSeconds=`).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Accepted {
    pub job_id: Uuid,
    /// Always `QUEUED` here.
    pub status: String,
    pub status_url: String,
}

/// The answer of every enqueueing endpoint.
#[derive(Debug, ApiResponse)]
pub enum AcceptedResponse {
    /// Queued; the same job is returned for a repeated `Idempotency-Key`.
    #[oai(status = 202)]
    Accepted(Json<Accepted>, #[oai(header = "Location")] String),
}

impl AcceptedResponse {
    /// 202 with the job's status URL in the body and `Location`.
    pub fn for_job(job_id: Uuid) -> Self {
        let url = format!("/v1/jobs/{job_id}");
        Self::Accepted(
            Json(Accepted {
                job_id,
                status: "QUEUED".into(),
                status_url: url.clone(),
            }),
            url,
        )
    }
}
