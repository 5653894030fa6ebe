//! Job status as clients poll it: a Redis hash per job for the fast path,
//! PostgreSQL's `job_outcomes` as the durable truth behind it.

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use entity::job_outcomes;
use redis::aio::ConnectionManager;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde::Serialize;
use uuid::Uuid;

use super::{JobHeader, JobKind, Outcome, backend};
use crate::error::{Error, Result};

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    fn parse(s: &str) -> Self {
        match s {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            _ => Self::Queued,
        }
    }

    /// Succeeded or failed: it will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStatus {
    pub job_id: Uuid,
    pub kind: JobKind,
    /// The user who submitted it: only they may read it.
    pub user_id: Option<Uuid>,
    pub phase: Phase,
    pub result: Option<serde_json::Value>,
    pub error: Option<(String, String)>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Reads and writes job status hashes under one prefix.
#[derive(Clone, Debug)]
pub struct StatusStore {
    redis: ConnectionManager,
    prefix: String,
    /// Life of a hash after its last write (`JOB_STATUS_TTL_SECONDS`): PostgreSQL
    /// keeps final outcomes for good and a queued task answers for itself, so
    /// Redis needs a job's hash only while clients are likely to poll it.
    ttl_seconds: u64,
}

const MARK: &str = r"
-- Marks one or more jobs (a worker's reserve batch in one call). Per job:
-- KEYS (4 each): status hash, the job's delivery counter, the task data hash
-- of the job's queue, the user's in-flight set of this kind.
-- ARGV: now_ms, ttl_s, done channel; then 8 each: phase, kind, user,
-- created_ms, result, code, message, job id.
-- Returns {written (1/0), deliveries so far (RUNNING counts one; else 0)} per
-- job, flattened. A final status is never overwritten, RUNNING never
-- replaces a final one, and a final write drops the counter (a late
-- redelivery replays the stored outcome), frees the job's place in its user's
-- in-flight bound and announces the job to long-polls ('<id> <hash as a JSON
-- array of fields and values>'; see `announced`).
local function mark(k, a)
  local phase, id = ARGV[a + 1], ARGV[a + 8]
  local final = phase == 'SUCCEEDED' or phase == 'FAILED'
  -- QUEUED is sent beside the push, not after it: only a queued task earns it
  -- (a status without a task would make a replayed key skip the push).
  if phase == 'QUEUED' and redis.call('HEXISTS', KEYS[k + 3], id) == 0 then
    return 0, 0
  end
  local deliveries = 0
  if phase == 'RUNNING' then
    deliveries = redis.call('INCR', KEYS[k + 2])
    redis.call('EXPIRE', KEYS[k + 2], 86400)
  end
  if final then
    redis.call('DEL', KEYS[k + 2])
    redis.call('ZREM', KEYS[k + 4], id)
  end
  local current = redis.call('HGET', KEYS[k + 1], 'status')
  if current == 'SUCCEEDED' or current == 'FAILED' then return 0, deliveries end
  if phase == 'QUEUED' and current then return 0, deliveries end
  -- One HSET per write. Any phase may write the hash first (a QUEUED write can
  -- be lost), so the first write of a hash also records who and when.
  local fields = {'status', phase, 'updated', ARGV[1], 'kind', ARGV[a + 2]}
  if not current then
    fields[#fields + 1] = 'created'; fields[#fields + 1] = ARGV[a + 4]
    fields[#fields + 1] = 'user'; fields[#fields + 1] = ARGV[a + 3]
  end
  if ARGV[a + 5] ~= '' then fields[#fields + 1] = 'result'; fields[#fields + 1] = ARGV[a + 5] end
  if ARGV[a + 6] ~= '' then
    fields[#fields + 1] = 'code'; fields[#fields + 1] = ARGV[a + 6]
    fields[#fields + 1] = 'message'; fields[#fields + 1] = ARGV[a + 7]
  end
  redis.call('HSET', KEYS[k + 1], unpack(fields))
  redis.call('EXPIRE', KEYS[k + 1], ARGV[2])
  -- The announcement carries the final hash, so a waiting poll need not read it.
  if final then
    redis.call('PUBLISH', ARGV[3], id .. ' ' .. cjson.encode(redis.call('HGETALL', KEYS[k + 1])))
  end
  return 1, deliveries
end
local out = {}
for j = 0, #KEYS / 4 - 1 do
  local written, deliveries = mark(j * 4, 3 + j * 8)
  out[#out + 1] = written
  out[#out + 1] = deliveries
end
return out
";

/// Built once: `Script::new` hashes the source (SHA-1), and every job status write runs it.
static MARK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(MARK));

/// What one MARK call records for one job.
#[derive(Clone, Copy, Debug)]
enum Change<'a> {
    Queued,
    Running,
    Final(&'a Outcome),
}

impl Change<'_> {
    /// Phase, result, code and message as the script takes them ('' for none).
    fn fields(self) -> (&'static str, String, String, String) {
        match self {
            Self::Queued => ("QUEUED", String::new(), String::new(), String::new()),
            Self::Running => ("RUNNING", String::new(), String::new(), String::new()),
            Self::Final(Outcome::Succeeded(v)) => {
                ("SUCCEEDED", v.to_string(), String::new(), String::new())
            }
            Self::Final(Outcome::Failed { code, message }) => {
                ("FAILED", String::new(), code.clone(), message.clone())
            }
        }
    }
}

impl StatusStore {
    /// A store for the stack `config` names (prefix and status life).
    pub fn new(redis: ConnectionManager, config: &crate::Config) -> Self {
        Self {
            redis,
            prefix: config.redis_prefix.clone(),
            ttl_seconds: config.job_status_ttl.as_secs(),
        }
    }

    fn key(&self, job_id: Uuid) -> String {
        format!("{}:job:{job_id}", self.prefix)
    }

    /// The apalis-redis hash holding the queued tasks of `kind`'s queue.
    fn task_data_key(&self, kind: JobKind) -> String {
        let queue = backend::queue_name(&self.prefix, backend::queue_of(kind));
        format!("{queue}:data")
    }

    /// The pub/sub channel on which final job ids are announced.
    pub fn done_channel(&self) -> String {
        format!("{}:jobs:done", self.prefix)
    }

    /// Records `QUEUED` unless the job already has a status (a fast worker
    /// wins) or its task is not in its queue (sent beside the push, it may
    /// arrive first: the status reads then fall back to the task).
    pub async fn mark_queued(
        &self,
        job_id: Uuid,
        kind: JobKind,
        user_id: Uuid,
        accepted_at: DateTime<Utc>,
    ) -> Result<()> {
        let job = JobHeader {
            job_id,
            user_id,
            accepted_at,
        };
        self.mark(&[(kind, job, Change::Queued)]).await.map(drop)
    }

    /// Counts a delivery of the job and records `RUNNING` unless it is already
    /// final, in one round trip; returns how many deliveries it has had.
    pub async fn start_delivery(
        &self,
        job_id: Uuid,
        kind: JobKind,
        user_id: Uuid,
        accepted_at: DateTime<Utc>,
    ) -> Result<u64> {
        let job = JobHeader {
            job_id,
            user_id,
            accepted_at,
        };
        Ok(self.start_deliveries(kind, &[job]).await?[0])
    }

    /// [`Self::start_delivery`] for many jobs of one kind in one round trip
    /// (a worker's reserve batch); deliveries in the order of `jobs`.
    pub async fn start_deliveries(&self, kind: JobKind, jobs: &[JobHeader]) -> Result<Vec<u64>> {
        let changes: Vec<_> = jobs.iter().map(|j| (kind, *j, Change::Running)).collect();
        Ok(self
            .mark(&changes)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// Records the final outcome and announces it to long-polling clients
    /// (in the same script: one round trip).
    /// `user_id` is recorded too, should the hash be gone (its owner must still read it).
    pub async fn mark_final(
        &self,
        job_id: Uuid,
        kind: JobKind,
        user_id: Uuid,
        accepted_at: DateTime<Utc>,
        outcome: &Outcome,
    ) -> Result<()> {
        let job = JobHeader {
            job_id,
            user_id,
            accepted_at,
        };
        self.mark_finals(kind, &[(job, outcome)]).await
    }

    /// [`Self::mark_final`] for many jobs of one kind in one round trip.
    pub async fn mark_finals(&self, kind: JobKind, jobs: &[(JobHeader, &Outcome)]) -> Result<()> {
        let changes: Vec<_> = jobs
            .iter()
            .map(|(j, outcome)| (kind, *j, Change::Final(outcome)))
            .collect();
        self.mark(&changes).await.map(drop)
    }

    /// Runs MARK over `changes` (one call however many); per change, whether
    /// it was written and the deliveries counted.
    async fn mark(&self, changes: &[(JobKind, JobHeader, Change<'_>)]) -> Result<Vec<(bool, u64)>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut script = MARK_SCRIPT.prepare_invoke();
        script
            .arg(Utc::now().timestamp_millis())
            .arg(self.ttl_seconds)
            .arg(self.done_channel());
        for (kind, job, change) in changes {
            let (phase, result, code, message) = change.fields();
            let key = self.key(job.job_id);
            script
                .key(&key)
                .key(format!("{key}:deliveries"))
                .key(self.task_data_key(*kind))
                .key(super::producer::in_flight_key(
                    &self.prefix,
                    *kind,
                    job.user_id,
                ))
                .arg(phase)
                .arg(kind.as_str())
                .arg(job.user_id.to_string())
                .arg(job.accepted_at.timestamp_millis())
                .arg(result)
                .arg(code)
                .arg(message)
                .arg(job.job_id.to_string());
        }
        let flat: Vec<u64> = script.invoke_async(&mut self.redis.clone()).await?;
        Ok(flat.chunks(2).map(|p| (p[0] == 1, p[1])).collect())
    }

    /// True when Redis holds any status for the job.
    pub async fn exists(&self, job_id: Uuid) -> Result<bool> {
        Ok(redis::cmd("EXISTS")
            .arg(self.key(job_id))
            .query_async::<i64>(&mut self.redis.clone())
            .await?
            == 1)
    }

    /// True when Redis holds a status for the job or its task in its queue
    /// (one round trip).
    pub async fn traces(&self, kind: JobKind, job_id: Uuid) -> Result<bool> {
        let (status, task): (bool, bool) = redis::pipe()
            .cmd("EXISTS")
            .arg(self.key(job_id))
            .cmd("HEXISTS")
            .arg(self.task_data_key(kind))
            .arg(job_id.to_string())
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(status || task)
    }

    /// The job's status as Redis holds it (one HGETALL), if it holds any.
    pub async fn cached(&self, job_id: Uuid) -> Result<Option<JobStatus>> {
        Ok(from_fields(job_id, &self.fields(job_id).await?))
    }

    async fn fields(&self, job_id: Uuid) -> Result<Vec<(String, String)>> {
        Ok(redis::cmd("HGETALL")
            .arg(self.key(job_id))
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// The job's status: Redis first, then the durable outcome; unknown → not found.
    pub async fn get(&self, db: &impl ConnectionTrait, job_id: Uuid) -> Result<JobStatus> {
        let fields = self.fields(job_id).await?;
        if let Some(status) = from_fields(job_id, &fields)
            && (status.phase.is_final() || !status_may_be_stale(&status))
        {
            return Ok(status);
        }
        // Boxed: sea-orm's query future is large, and a long-poll holding this
        // future would carry its size for as long as it waits.
        let outcome = Box::pin(job_outcomes::Entity::find_by_id(job_id).one(db)).await?;
        match (outcome, from_fields(job_id, &fields)) {
            (Some(o), _) => Ok(from_outcome(o)),
            (None, Some(status)) => Ok(status),
            (None, None) => self
                .queued_task(job_id)
                .await?
                .ok_or_else(|| Error::not_found("job", job_id)),
        }
    }

    /// A job whose status hash is missing (its write failed after the push, or
    /// Redis lost it) but whose task still waits in a queue reads as QUEUED,
    /// from the task's own payload. One pipelined HGET per job kind's queue.
    async fn queued_task(&self, job_id: Uuid) -> Result<Option<JobStatus>> {
        let mut pipe = redis::pipe();
        for queue in backend::CLIENT_QUEUES.map(|(_, q)| q) {
            pipe.cmd("HGET")
                .arg(format!("{}:data", backend::queue_name(&self.prefix, queue)))
                .arg(job_id.to_string());
        }
        let found: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(backend::CLIENT_QUEUES
            .iter()
            .zip(found)
            .find_map(|((kind, _), data)| Some((*kind, data?)))
            .and_then(|(kind, data)| {
                let task: JobHeader = serde_json::from_slice(&data).ok()?;
                Some(JobStatus {
                    job_id,
                    kind,
                    user_id: Some(task.user_id),
                    phase: Phase::Queued,
                    result: None,
                    error: None,
                    created_at: task.accepted_at,
                    updated_at: task.accepted_at,
                })
            }))
    }
}

/// Reads an announcement on [`StatusStore::done_channel`]: the job id and,
/// when the announcement carries it (MARK sends its final hash), its status.
pub fn announced(payload: &str) -> Option<(Uuid, Option<JobStatus>)> {
    let (id, hash) = payload.split_once(' ').unwrap_or((payload, ""));
    let id = Uuid::parse_str(id).ok()?;
    let flat: Vec<String> = serde_json::from_str(hash).unwrap_or_default();
    let fields: Vec<(String, String)> = flat
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    Some((id, from_fields(id, &fields)))
}

/// A non-final status older than a minute is double-checked against PostgreSQL
/// (its final write to Redis may have been lost).
fn status_may_be_stale(status: &JobStatus) -> bool {
    Utc::now() - status.updated_at > chrono::Duration::seconds(60)
}

fn millis(ms: &str) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms.parse().ok()?).single()
}

fn from_fields(job_id: Uuid, fields: &[(String, String)]) -> Option<JobStatus> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let phase = Phase::parse(get("status")?);
    Some(JobStatus {
        job_id,
        kind: JobKind::parse(get("kind")?)?,
        user_id: get("user").and_then(|u| Uuid::parse_str(u).ok()),
        phase,
        result: get("result").and_then(|r| serde_json::from_str(r).ok()),
        error: get("code").map(|c| (c.to_owned(), get("message").unwrap_or_default().to_owned())),
        created_at: get("created").and_then(millis)?,
        updated_at: get("updated").and_then(millis)?,
    })
}

fn from_outcome(o: job_outcomes::Model) -> JobStatus {
    let succeeded = o.status == "SUCCEEDED";
    JobStatus {
        job_id: o.job_id,
        kind: JobKind::parse(&o.kind).unwrap_or(JobKind::Reserve),
        user_id: o.user_id,
        phase: if succeeded {
            Phase::Succeeded
        } else {
            Phase::Failed
        },
        result: o.result,
        error: o
            .error_code
            .map(|c| (c, o.error_message.unwrap_or_default())),
        created_at: o.accepted_at,
        updated_at: o.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_reads_with_or_without_the_hash() {
        let id = Uuid::now_v7();
        assert_eq!(announced(&id.to_string()), Some((id, None)));
        let payload = format!(
            r#"{id} ["status","FAILED","updated","2000","kind","PAY","created","1000","code","X","message","no \/ way"]"#
        );
        let (read, status) = announced(&payload).unwrap();
        let status = status.expect("the hash it carried");
        assert_eq!(
            (read, status.phase, status.kind),
            (id, Phase::Failed, JobKind::Pay)
        );
        assert_eq!(status.error, Some(("X".into(), "no / way".into())));
        assert_eq!(announced("not-a-uuid []"), None);
    }
}
