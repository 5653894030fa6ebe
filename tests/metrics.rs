//! Observability end to end: `/metrics` on the api's and the worker's own
//! listeners moves with a real flow and passes `promtool check metrics`, and the
//! public address does not serve it; the ops snapshot sums every api instance
//! of a stack; the alert rules pass `promtool check rules` and name only
//! exported series.
//!
//! The metrics registry is process-wide and other tests of this binary share it,
//! so Prometheus assertions are deltas or presence, never absolute counts; the
//! ops window is per Redis prefix, so its counts are exact.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::{
    collections::HashMap,
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Fan, TestApp, eventually, free_port};
use domain::ops::metrics as m;

/// `series{labels}` → value, from a Prometheus text scrape.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(scrape: &HashMap<String, f64>, series: &str) -> f64 {
    scrape.get(series).copied().unwrap_or(0.0)
}

async fn scrape(url: &str) -> (String, HashMap<String, f64>) {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let parsed = parse(&text);
    (text, parsed)
}

/// Runs `promtool` with `args`, feeding `stdin`; fails the test if it is missing
/// (scripts/test.sh installs it) or reports a problem.
fn promtool(args: &[&str], stdin: &str) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool not found: install Debian's prometheus (scripts/services.sh --test-tools)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn recharge(app: &TestApp, fan: &Fan, amount: i64) -> String {
    TestApp::accepted_job(app.recharge(fan, amount).await).await
}

#[tokio::test]
async fn metrics_move_with_a_flow_and_pass_promtool() {
    let worker_port = free_port();
    let app = TestApp::builder()
        .env("WORKER_METRICS_ADDR", format!("127.0.0.1:{worker_port}"))
        .workers(1)
        .spawn()
        .await;
    let before = parse(&app.metrics_text().await);

    // The flow: sign up, queue token, reserve (a worker runs it), recharge.
    let schedule = app.open_concert(1, 5_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let fan = app.active_fan().await;
    let reserve = TestApp::accepted_job(app.reserve(&fan, schedule, &[1, 2], None).await).await;
    assert_eq!(
        app.final_job(&fan.token, &reserve).await["status"],
        "SUCCEEDED"
    );
    let recharged = recharge(&app, &fan, 10_000).await;
    assert_eq!(
        app.final_job(&fan.access, &recharged).await["status"],
        "SUCCEEDED"
    );
    assert_eq!(app.get("/v1/no/such/route").await.status(), 404);

    let text = app.metrics_text().await;
    let after = parse(&text);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let reserve_202 = format!(
        r#"{}{{method="POST",route="/v1/reservations",status="202"}}"#,
        m::HTTP_REQUESTS
    );
    assert!(delta(&reserve_202) >= 1.0, "{reserve_202} did not move");
    let job_reads = format!(
        r#"{}{{method="GET",route="/v1/jobs/{{jobId}}",status="200"}}"#,
        m::HTTP_REQUESTS
    );
    assert!(delta(&job_reads) >= 2.0, "{job_reads} did not move");
    assert!(
        delta(&format!(
            r#"{}{{method="GET",route="unmatched",status="404"}}"#,
            m::HTTP_REQUESTS
        )) >= 1.0
    );
    assert!(
        delta(&format!(
            r#"{}_count{{method="POST",route="/v1/users"}}"#,
            m::HTTP_DURATION
        )) >= 1.0
    );
    assert!(
        !text.contains(&reserve) && !text.contains(&fan.user_id),
        "raw ids leaked into labels"
    );
    for kind in ["reserve", "recharge"] {
        let accepted = format!(r#"{}{{kind="{kind}"}}"#, m::JOBS_ACCEPTED);
        let started = format!(r#"{}{{kind="{kind}"}}"#, m::JOBS_STARTED);
        let finished = format!(
            r#"{}{{kind="{kind}",outcome="succeeded"}}"#,
            m::JOBS_FINISHED
        );
        let settled = format!(r#"{}_count{{kind="{kind}"}}"#, m::JOB_SETTLE);
        for series in [accepted, started, finished, settled] {
            assert!(delta(&series) >= 1.0, "{series} did not move");
        }
    }
    assert!(text.contains(&format!(
        "{}_bucket{{kind=\"reserve\",le=\"0.5\"}}",
        m::JOB_SETTLE
    )));

    // Gauges refreshed by the once-a-second sampler.
    let gauges = eventually(Duration::from_secs(10), || async {
        let text = app.metrics_text().await;
        let parsed = parse(&text);
        let present = [
            format!(r#"{}{{queue="reserve",state="waiting"}}"#, m::QUEUE_JOBS),
            format!(
                r#"{}{{queue="expire_hold",state="scheduled"}}"#,
                m::QUEUE_JOBS
            ),
            format!(r#"{}{{queue="pay",state="running"}}"#, m::QUEUE_JOBS),
            m::WR_WAITING.to_owned(),
            m::WR_ACTIVE.to_owned(),
            format!(r#"{}{{event="admitted"}}"#, m::WR_EVENTS),
            format!(r#"{}{{state="idle"}}"#, m::DB_POOL),
            format!(r#"{}{{state="in_use"}}"#, m::DB_POOL),
        ]
        .iter()
        .all(|s| parsed.contains_key(s));
        present.then_some(text)
    })
    .await;
    promtool(&["check", "metrics"], &gauges);

    // The worker's own endpoint: the same registry, and promtool agrees.
    let (worker_text, worker) = scrape(&format!("http://127.0.0.1:{worker_port}/metrics")).await;
    assert!(
        value(
            &worker,
            &format!(r#"{}{{kind="reserve"}}"#, m::JOBS_STARTED)
        ) >= 1.0,
        "{worker_text}"
    );
    promtool(&["check", "metrics"], &worker_text);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_not_on_the_public_address() {
    let app = TestApp::spawn().await;
    let unmatched = format!(
        r#"{}{{method="GET",route="unmatched",status="404"}}"#,
        m::HTTP_REQUESTS
    );
    let before = value(&parse(&app.metrics_text().await), &unmatched);

    // The public address: a 404 problem like any unknown route, and counted as one.
    let body = common::problem(app.get("/metrics").await, 404).await;
    assert_eq!(body["code"], "ROUTE_NOT_FOUND");

    let text = app.metrics_text().await;
    assert!(value(&parse(&text), &unmatched) - before >= 1.0, "{text}");
    promtool(&["check", "metrics"], &text);
    // The listener serves the registry and nothing else of the app.
    let private = app.metrics_addr.unwrap();
    assert_ne!(private, app.addr);
    let health = reqwest::get(format!("http://{private}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 404);
}

#[tokio::test]
async fn dependency_errors_are_counted_by_dependency() {
    let metrics = TestApp::spawn().await;
    let down = TestApp::builder()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .spawn()
        .await;
    let series = format!(r#"{}{{dependency="redis"}}"#, m::DEPENDENCY_ERRORS);
    let before = parse(&metrics.metrics_text().await);
    // A valid caller asking for a queue token: the known-user check is a Redis call.
    let identity = domain::identity::Identity::from_config(&down.config).unwrap();
    let access = identity.mint(uuid::Uuid::new_v4()).unwrap().token;
    let resp = down
        .http
        .post(down.url("/v1/queue/tokens"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let after = parse(&metrics.metrics_text().await);
    assert!(value(&after, &series) - value(&before, &series) >= 1.0);
}

async fn snapshot(app: &TestApp) -> serde_json::Value {
    let resp = app
        .http
        .get(app.url("/v1/admin/ops/snapshot"))
        .bearer_auth(&app.config.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn sum(snapshot: &serde_json::Value, series: &str) -> u64 {
    snapshot["series"][series]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_ops_snapshot_is_the_whole_stack_from_either_api_instance() {
    let a = TestApp::builder().workers(1).spawn().await;
    let b = TestApp::builder().sibling_of(&a).spawn().await;
    assert_eq!(
        a.get("/v1/admin/ops/snapshot").await.status(),
        401,
        "the snapshot needs the admin token"
    );
    // Three fans admitted and recharging through A, two through B.
    let mut jobs = Vec::new();
    for app in [&a, &a, &a, &b, &b] {
        let fan = app.active_fan().await;
        let job = recharge(app, &fan, 1_000).await;
        jobs.push((fan, job));
    }
    for (fan, job) in &jobs {
        assert_eq!(a.final_job(&fan.access, job).await["status"], "SUCCEEDED");
    }
    // Within a couple of samples, both instances show the same, exact totals.
    for app in [&a, &b] {
        let s = eventually(Duration::from_secs(10), || async {
            let s = snapshot(app).await;
            (sum(&s, "succeeded") == 5 && sum(&s, "admitted") == 5 && s["line"]["active"] == 5)
                .then_some(s)
        })
        .await;
        assert_eq!(s["windowSeconds"], 600);
        assert_eq!(s["series"]["at"].as_array().unwrap().len(), 600);
        assert_eq!(sum(&s, "failed"), 0);
        assert_eq!(s["line"]["waiting"], 0);
        assert_eq!(s["line"]["lastInLineEtaSeconds"], 0);
        assert!(
            s["jobs"]["settleP99Seconds"].as_f64().unwrap() > 0.0,
            "{}",
            s["jobs"]
        );
        let queues: Vec<&str> = s["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["queue"].as_str().unwrap())
            .collect();
        assert_eq!(queues, ["reserve", "expire_hold", "recharge", "pay"]);
    }
}

#[test]
fn alert_rules_pass_promtool_and_name_only_exported_series() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = format!("{root}/docs/ops/alerts.yml");
    promtool(&["check", "rules", &rules], "");
    let exported = [
        m::HTTP_REQUESTS,
        m::HTTP_DURATION,
        m::JOBS_ACCEPTED,
        m::JOBS_STARTED,
        m::JOBS_FINISHED,
        m::JOB_RETRIES,
        m::JOB_SETTLE,
        m::QUEUE_JOBS,
        m::WR_WAITING,
        m::WR_ACTIVE,
        m::WR_EVENTS,
        m::DB_POOL,
        m::DEPENDENCY_ERRORS,
    ];
    for file in ["docs/ops/alerts.yml", "docs/ops/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let mut named = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("concert_") {
                continue;
            }
            named += 1;
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                exported.contains(&base),
                "{file} names {word}, which is not exported"
            );
        }
        assert!(named >= 5, "{file} names only {named} series");
    }
}

#[tokio::test]
async fn the_ops_shell_is_public_and_only_its_data_is_documented() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/ops", "text/html; charset=utf-8"),
        ("/ops/ops.js", "text/javascript; charset=utf-8"),
        ("/ops/ops.css", "text/css; charset=utf-8"),
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
    }
    let page = app.get("/ops").await.text().await.unwrap();
    assert!(
        page.contains(r#"<script src="/ops/ops.js""#),
        "the page's script is embedded, not remote"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing fetched from elsewhere"
    );
    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let snapshot = &spec["paths"]["/v1/admin/ops/snapshot"]["get"];
    assert!(
        snapshot["security"].to_string().contains("AdminAuth"),
        "{snapshot}"
    );
    assert!(spec["paths"]["/metrics"].is_null() && spec["paths"]["/ops"].is_null());
}
