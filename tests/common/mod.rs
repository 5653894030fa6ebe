//! Test harness: every test gets its own PostgreSQL database, cloned from a
//! migrated template, and its own Redis key prefix, so tests run in parallel
//! against the real services without seeing each other.

#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod browser;
pub mod db;
pub mod own_redis;

use std::{collections::HashMap, net::SocketAddr};

use redis::Commands;

use domain::Config;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use uuid::Uuid;

pub use db::TestDb;

/// Redis for tests: `TEST_REDIS_URL`, else `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A TCP port nothing listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running api on a free port, backed by its own database and Redis prefix.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// Where this app serves `/metrics` (`API_METRICS_ADDR`), unless a test turned it off.
    pub metrics_addr: Option<SocketAddr>,
    pub http: reqwest::Client,
    pub db: DatabaseConnection,
    pub config: Config,
    /// The database this app owns (siblings share their original's).
    pub test_db: Option<TestDb>,
    /// The api's own state (a clone: the same pools, caches and watcher).
    pub state: api::AppState,
    /// Access tokens of the users this app signed up or minted for, by user id.
    access: std::sync::Mutex<HashMap<String, String>>,
    shutdown: watch::Sender<bool>,
}

/// A fan, their access token and their queue token.
#[derive(Clone, Debug)]
pub struct Fan {
    pub user_id: String,
    pub access: String,
    pub token: String,
}

/// Builder so a test can override configuration (e.g. a dead Redis URL).
#[derive(Default)]
pub struct TestAppBuilder {
    overrides: HashMap<&'static str, String>,
    shared_db: bool,
    workers: usize,
}

impl TestAppBuilder {
    pub fn env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.overrides.insert(key, value.into());
        self
    }

    /// Also run `n` in-process job workers (the real `worker::run`).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// A second api instance over the same database and Redis prefix as `app`.
    pub fn sibling_of(mut self, app: &TestApp) -> Self {
        self.overrides
            .insert("DATABASE_URL", app.config.database_url.clone());
        self.overrides
            .insert("REDIS_PREFIX", app.config.redis_prefix.clone());
        self.overrides
            .insert("REDIS_URL", app.config.redis_url.clone());
        self.shared_db = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let test_db = if self.shared_db {
            None
        } else {
            Some(TestDb::create().await)
        };
        let db_url = test_db.as_ref().map(|d| d.url.clone()).unwrap_or_default();
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", db_url),
            ("DATABASE_MAX_CONNECTIONS", "8".into()),
            ("REDIS_URL", redis_url()),
            ("REDIS_PREFIX", prefix),
            ("API_ADDR", "127.0.0.1:0".into()),
            ("ADMIN_TOKEN", "test-admin-token".into()),
            ("API_BODY_LIMIT_BYTES", "4096".into()),
            ("SHUTDOWN_GRACE_SECONDS", "2".into()),
            // Many in-process workers: each metrics endpoint on its own free port.
            ("WORKER_METRICS_ADDR", "127.0.0.1:0".into()),
            // The api's own metrics listener, on a free port (`metrics_text` finds it).
            ("API_METRICS_ADDR", "127.0.0.1:0".into()),
            // Off: tests sign up and mint many users from 127.0.0.1. The limit's
            // own tests (tests/rate_limits.rs) set it.
            ("SIGNUP_PER_MINUTE_PER_ADDRESS", "0".into()),
        ]);
        vars.extend(self.overrides);
        let config = Config::from_map(&vars).expect("test config is valid");
        let (acceptor, addr) = api::bind(&config.api_addr).await.expect("bind");
        let state = api::state_from_config(config.clone()).await.expect("state");
        let (tx, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // As `concert api` does (src/cli.rs): the registry on its own listener.
        let metrics_addr = match &config.api_metrics_addr {
            Some(at) => {
                let served = worker::observe::serve_metrics("API_METRICS_ADDR", at, rx.clone());
                Some(served.await.expect("api metrics listener").0)
            }
            None => None,
        };
        tokio::spawn(api::serve(acceptor, state.clone(), stopped(rx.clone())));
        for _ in 0..self.workers {
            let (config, stop) = (config.clone(), stopped(rx.clone()));
            tokio::spawn(async move {
                if let Err(error) = worker::run(config, stop).await {
                    panic!("in-process worker failed: {error:#}");
                }
            });
        }
        // The test's own handle: its database even when the app is pointed at a dead one.
        let own_url = test_db
            .as_ref()
            .map_or(config.database_url.clone(), |d| d.url.clone());
        let db = domain::platform::db::connect_url(&own_url, 4, false)
            .await
            .expect("test db");
        TestApp {
            addr,
            base: format!("http://{addr}"),
            metrics_addr,
            http: reqwest::Client::new(),
            db,
            config,
            test_db,
            state,
            access: std::sync::Mutex::default(),
            shutdown: tx,
        }
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// This app's Prometheus scrape from its metrics listener (checked: 200, text format).
    pub async fn metrics_text(&self) -> String {
        let at = self.metrics_addr.expect("API_METRICS_ADDR is off");
        let resp = self
            .http
            .get(format!("http://{at}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(resp.status(), 200, "scraping {at}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        resp.text().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.config.admin_token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a concert through the admin API and returns its JSON.
    pub async fn create_concert(&self, body: &serde_json::Value) -> serde_json::Value {
        let resp = self.admin_post("/v1/admin/concerts", body).await;
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    /// A bookable concert with `schedules` dates priced `price`.
    pub async fn open_concert(&self, schedules: usize, price: i64) -> serde_json::Value {
        let now = chrono::Utc::now();
        let items: Vec<_> = (0..schedules)
            .map(|i| {
                let i = i64::try_from(i).unwrap();
                serde_json::json!({
                    "startsAt": now + chrono::Duration::days(10 + i),
                    "bookingOpensAt": now - chrono::Duration::hours(1),
                    "bookingClosesAt": now + chrono::Duration::days(9),
                    "seatPrice": price,
                })
            })
            .collect();
        self.create_concert(&serde_json::json!({ "title": "Test concert", "schedules": items }))
            .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Signs a fan up and returns the user id (its access token is kept: see `access_token`).
    pub async fn sign_up(&self, name: &str) -> String {
        let resp = self
            .post_json("/v1/users", &serde_json::json!({ "name": name }))
            .await;
        assert_eq!(resp.status(), 201);
        let body: serde_json::Value = resp.json().await.unwrap();
        let user_id = body["userId"].as_str().unwrap().to_owned();
        let access = body["accessToken"].as_str().unwrap().to_owned();
        self.access.lock().unwrap().insert(user_id.clone(), access);
        user_id
    }

    /// The access token of `user_id`: the one from sign-up, else one an operator mints.
    pub async fn access_token(&self, user_id: &str) -> String {
        if let Some(token) = self.access.lock().unwrap().get(user_id) {
            return token.clone();
        }
        let resp = self
            .admin_post(
                &format!("/v1/admin/users/{user_id}/access-tokens"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(resp.status(), 201, "minting for {user_id}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let token = body["accessToken"].as_str().unwrap().to_owned();
        self.access
            .lock()
            .unwrap()
            .insert(user_id.to_owned(), token.clone());
        token
    }

    /// Asks for a queue token as `user_id` (with its access token, no body).
    pub async fn issue_token(&self, user_id: &str) -> reqwest::Response {
        let access = self.access_token(user_id).await;
        self.http
            .post(self.url("/v1/queue/tokens"))
            .bearer_auth(access)
            .send()
            .await
            .expect("request")
    }

    /// A signed-up fan holding an ACTIVE token (tests run with room to spare).
    pub async fn active_fan(&self) -> Fan {
        let user_id = self.sign_up("fan").await;
        let ticket: serde_json::Value = self.issue_token(&user_id).await.json().await.unwrap();
        assert_eq!(ticket["status"], "ACTIVE", "{ticket}");
        Fan {
            access: self.access_token(&user_id).await,
            user_id,
            token: ticket["token"].as_str().unwrap().to_owned(),
        }
    }

    /// `n` fans holding ACTIVE tokens, signed up concurrently.
    pub async fn active_fans(&self, n: usize) -> Vec<Fan> {
        futures::future::join_all((0..n).map(|_| self.active_fan())).await
    }

    /// POSTs a reserve request as `fan`, optionally with an idempotency key.
    pub async fn reserve(
        &self,
        fan: &Fan,
        schedule_id: i64,
        seats: &[i64],
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/reservations"))
            .bearer_auth(&fan.token)
            .json(&serde_json::json!({ "scheduleId": schedule_id, "seatNumbers": seats }));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("request")
    }

    /// POSTs a recharge of `amount` won as `fan` (access token, no idempotency key).
    pub async fn recharge(&self, fan: &Fan, amount: i64) -> reqwest::Response {
        self.recharge_keyed(fan, amount, None).await
    }

    /// POSTs a recharge of `amount` won as `fan`, optionally with an idempotency key.
    pub async fn recharge_keyed(
        &self,
        fan: &Fan,
        amount: i64,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(&format!("/v1/users/{}/balance/recharges", fan.user_id)))
            .bearer_auth(&fan.access)
            .json(&serde_json::json!({ "amount": amount }));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("request")
    }

    /// A job as `token` (its owner's access or queue token) reads it now, without waiting.
    pub async fn job_now(&self, token: &str, job_id: &str) -> serde_json::Value {
        let resp = self.get_as(token, &format!("/v1/jobs/{job_id}")).await;
        assert_eq!(resp.status(), 200, "reading job {job_id}");
        resp.json().await.unwrap()
    }

    /// The job id of a 202 answer (checking its shape).
    pub async fn accepted_job(resp: reqwest::Response) -> String {
        assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "QUEUED");
        assert_eq!(body["statusUrl"], location.as_str());
        body["jobId"].as_str().unwrap().to_owned()
    }

    /// Long-polls a job as `token` (its owner's access or queue token) until it is
    /// final (bounded), returning its JSON.
    pub async fn final_job(&self, token: &str, job_id: &str) -> serde_json::Value {
        for _ in 0..6 {
            let job: serde_json::Value = self
                .get_as(token, &format!("/v1/jobs/{job_id}?waitSeconds=10"))
                .await
                .json()
                .await
                .unwrap();
            if job["status"] == "SUCCEEDED" || job["status"] == "FAILED" {
                return job;
            }
        }
        panic!("job {job_id} not final within 60 s");
    }

    /// A scalar from the test's database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let stmt = sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql);
        let row = self.db.query_one_raw(stmt).await.unwrap().unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// A connection to the Redis the app uses, for looking behind its back.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.config.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn redis_prefix(&self) -> &str {
        &self.config.redis_prefix
    }

    /// Jobs waiting in `queue` (e.g. `reserve`): apalis-redis parks a new task
    /// in the queue's scheduled set (due now) until a worker's fetch moves it
    /// to the active list, so both count.
    pub async fn backlog(&self, queue: &str) -> i64 {
        let queue = format!("{}_{queue}", self.redis_prefix());
        let (active, scheduled): (i64, i64) = redis::pipe()
            .cmd("LLEN")
            .arg(format!("{queue}:active"))
            .cmd("ZCARD")
            .arg(format!("{queue}:scheduled"))
            .query_async(&mut self.redis().await)
            .await
            .unwrap();
        active + scheduled
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        let pattern = format!("{}*", self.config.redis_prefix);
        let url = self.config.redis_url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
                return;
            };
            let keys: Vec<String> = conn
                .scan_match::<_, String>(&pattern)
                .map(|it| it.filter_map(Result::ok).collect())
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        })
        .join();
    }
}

/// A reserve job as the api would enqueue it, for driving `domain::booking` directly.
pub fn reserve_job(user_id: Uuid, schedule_id: i64, seats: &[i16]) -> domain::jobs::ReserveJob {
    domain::jobs::ReserveJob {
        job_id: Uuid::now_v7(),
        user_id,
        schedule_id,
        seat_numbers: seats.to_vec(),
        accepted_at: chrono::Utc::now(),
        request_id: None,
    }
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit`.
/// The one way tests wait for a condition: never a bare sleep.
pub async fn eventually<T, Fut>(limit: std::time::Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["code"].is_string(), "{body}");
    body
}
