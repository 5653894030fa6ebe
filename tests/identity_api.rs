//! Identity end to end: access tokens, who may see what, an external provider,
//! and the per-person seat limit.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod common;

use std::process::Command;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use common::{TestApp, problem};
use futures::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A token signed with HS256 and `secret` over `claims`.
fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn claims(sub: &str, exp_offset: i64) -> Value {
    json!({
        "sub": sub,
        "exp": chrono::Utc::now().timestamp() + exp_offset,
        "iss": domain::identity::DEFAULT_ISSUER,
        "aud": domain::identity::DEFAULT_AUDIENCE,
    })
}

/// Asserts a 401 problem that names the Bearer scheme.
async fn unauthorized(resp: reqwest::Response) -> Value {
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{challenge:?}"
    );
    problem(resp, 401).await
}

#[tokio::test]
async fn bad_access_tokens_are_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let user = app.sign_up("kim").await;
    let secret = &app.config.auth_jwt_secret;
    let mut wrong_iss = claims(&user, 3600);
    wrong_iss["iss"] = "someone-else".into();
    let mut wrong_aud = claims(&user, 3600);
    wrong_aud["aud"] = "another-api".into();
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header}.{}.", B64.encode(claims(&user, 3600).to_string()));
    let garbage: String = (0..5 * 1024)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let cases = [
        (
            "forged",
            hs256(&claims(&user, 3600), "not-the-secret-but-32-bytes-long!"),
        ),
        ("alg none", alg_none),
        ("expired", hs256(&claims(&user, -3600), secret)),
        ("wrong iss", hs256(&wrong_iss, secret)),
        ("wrong aud", hs256(&wrong_aud, secret)),
        ("5 KB garbage", garbage),
    ];
    let good = app.access_token(&user).await;
    assert_eq!(
        app.get_as(&good, &format!("/v1/users/{user}"))
            .await
            .status(),
        200
    );
    for (what, token) in &cases {
        let p = unauthorized(app.get_as(token, &format!("/v1/users/{user}")).await).await;
        assert_eq!(p["code"], "UNAUTHORIZED", "{what}");
        let resp = app
            .http
            .post(app.url("/v1/queue/tokens"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        unauthorized(resp).await;
    }
    unauthorized(app.get(&format!("/v1/users/{user}/balance")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_resources_are_404_and_nothing_is_written() {
    let app = TestApp::builder().workers(1).spawn().await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    let (owner, other) = (app.active_fan().await, app.active_fan().await);
    let job = TestApp::accepted_job(app.reserve(&owner, schedule, &[5], None).await).await;
    let hold = app.final_job(&owner.access, &job).await;
    let rid = hold["result"]["reservationId"].as_str().unwrap().to_owned();
    let before = (
        app.scalar("SELECT count(*) FROM job_outcomes").await,
        app.scalar("SELECT count(*) FROM ledger_entries").await,
    );
    // Reads: every user-scoped resource of `owner`, asked by `other` with each of their tokens.
    let reads = [
        (
            other.access.as_str(),
            format!("/v1/users/{}", owner.user_id),
        ),
        (
            other.access.as_str(),
            format!("/v1/users/{}/balance", owner.user_id),
        ),
        (other.access.as_str(), format!("/v1/jobs/{job}")),
        (other.token.as_str(), format!("/v1/jobs/{job}")),
        (other.token.as_str(), format!("/v1/reservations/{rid}")),
    ];
    for (token, path) in &reads {
        let p = problem(app.get_as(token, path).await, 404).await;
        assert_eq!(p["code"], "NOT_FOUND", "{path}");
    }
    // The owner reads the same job with either of their tokens.
    for token in [&owner.access, &owner.token] {
        let resp = app.get_as(token, &format!("/v1/jobs/{job}")).await;
        assert_eq!(resp.status(), 200);
    }
    // A long-poll of someone else's job is a 404 at once, not a wait.
    let p = problem(
        app.get_as(&other.access, &format!("/v1/jobs/{job}?waitSeconds=30"))
            .await,
        404,
    )
    .await;
    assert_eq!(p["code"], "NOT_FOUND");
    // Writes: a recharge into the owner's wallet.
    let resp = app
        .http
        .post(app.url(&format!("/v1/users/{}/balance/recharges", owner.user_id)))
        .bearer_auth(&other.access)
        .json(&json!({ "amount": 1000 }))
        .send()
        .await
        .unwrap();
    problem(resp, 404).await;
    // A queue token is not an access token, and the reverse.
    unauthorized(
        app.get_as(&owner.token, &format!("/v1/users/{}", owner.user_id))
            .await,
    )
    .await;
    problem(app.get_as(&owner.access, "/v1/concerts").await, 401).await;
    let after = (
        app.scalar("SELECT count(*) FROM job_outcomes").await,
        app.scalar("SELECT count(*) FROM ledger_entries").await,
    );
    assert_eq!(before, after, "nothing was written");
    let queued: i64 = redis::cmd("HLEN")
        .arg(format!("{}_recharge:data", app.redis_prefix()))
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    assert_eq!(queued, 0, "no recharge was queued");
}

#[tokio::test]
async fn operators_mint_access_tokens_for_existing_users_only() {
    let app = TestApp::spawn().await;
    let user = app.sign_up("seeded").await;
    let path = format!("/v1/admin/users/{user}/access-tokens");
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth("wrong-admin-token")
        .send()
        .await
        .unwrap();
    unauthorized(resp).await;
    let minted = app.admin_post(&path, &json!({})).await;
    assert_eq!(minted.status(), 201);
    let body: Value = minted.json().await.unwrap();
    assert!(body["expiresAt"].is_string(), "{body}");
    let token = body["accessToken"].as_str().unwrap();
    assert_eq!(
        app.get_as(token, &format!("/v1/users/{user}"))
            .await
            .status(),
        200
    );
    let unknown = format!("/v1/admin/users/{}/access-tokens", uuid::Uuid::new_v4());
    problem(app.admin_post(&unknown, &json!({})).await, 404).await;
}

/// An RSA key pair made for this test: (private PEM, public PEM).
fn rsa_key_pair() -> (String, String) {
    let private = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap();
    assert!(private.status.success(), "openssl genpkey");
    let mut public = Command::new("openssl")
        .args(["pkey", "-pubout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        public
            .stdin
            .take()
            .unwrap()
            .write_all(&private.stdout)
            .unwrap();
    }
    let public = public.wait_with_output().unwrap();
    assert!(public.status.success(), "openssl pkey -pubout");
    (
        String::from_utf8(private.stdout).unwrap(),
        String::from_utf8(public.stdout).unwrap(),
    )
}

const IDP: &str = "https://idp.test.example";

fn rs256(private: &str, sub: &str, name: &str) -> String {
    rs256_claims(private, &provider_claims(sub, name))
}

/// What the test provider puts in a token for `sub`.
fn provider_claims(sub: &str, name: &str) -> Value {
    json!({
        "sub": sub,
        "name": name,
        "exp": chrono::Utc::now().timestamp() + 600,
        "iss": IDP,
        "aud": "concert-tests",
    })
}

fn rs256_claims(private: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// An app that trusts the test provider's public key, and its private key.
async fn app_trusting_a_provider() -> (TestApp, String) {
    let (private, public) = rsa_key_pair();
    let app = TestApp::builder()
        .env("AUTH_JWT_PUBLIC_KEY", public)
        .env("AUTH_ISSUER", IDP)
        .env("AUTH_AUDIENCE", "concert-tests")
        .spawn()
        .await;
    (app, private)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_providers_tokens_create_each_user_exactly_once() {
    let (private, public) = rsa_key_pair();
    let app = TestApp::builder()
        .env("AUTH_JWT_PUBLIC_KEY", public)
        .env("AUTH_ISSUER", IDP)
        .env("AUTH_AUDIENCE", "concert-tests")
        .spawn()
        .await;
    // A provider's own subject format: 20 concurrent first calls, one user.
    let token = rs256(&private, "idp|user-42", "Lee");
    let answers = join_all((0..20).map(|_| async {
        app.http
            .post(app.url("/v1/queue/tokens"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }))
    .await;
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 201),
        "{answers:?}"
    );
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM users u JOIN wallets w ON w.user_id = u.id WHERE u.name = 'Lee' AND w.balance = 0")
            .await,
        1
    );
    // A UUID subject is the user id itself.
    let id = uuid::Uuid::new_v4();
    let token = rs256(&private, &id.to_string(), "Park");
    let me: Value = app
        .get_as(&token, &format!("/v1/users/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["userId"].as_str(), me["name"].as_str()),
        (Some(id.to_string().as_str()), Some("Park"))
    );
    // The service mints nothing of its own, and its HS256 key is no way in.
    let p = problem(app.post_json("/v1/users", &json!({"name": "x"})).await, 409).await;
    assert_eq!(p["code"], "EXTERNAL_IDENTITY_PROVIDER");
    let mint = format!("/v1/admin/users/{id}/access-tokens");
    problem(app.admin_post(&mint, &json!({})).await, 409).await;
    let mut claims = json!({
        "sub": id.to_string(), "exp": chrono::Utc::now().timestamp() + 600,
        "iss": IDP, "aud": "concert-tests",
    });
    let forged = hs256(&claims, &app.config.auth_jwt_secret);
    unauthorized(app.get_as(&forged, &format!("/v1/users/{id}")).await).await;
    // Another key pair's signature, and the provider's token for another audience.
    let (stranger, _) = rsa_key_pair();
    let foreign = rs256(&stranger, &id.to_string(), "x");
    unauthorized(app.get_as(&foreign, &format!("/v1/users/{id}")).await).await;
    claims["aud"] = "another-api".into();
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let other_aud = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    unauthorized(app.get_as(&other_aud, &format!("/v1/users/{id}")).await).await;
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 2);
}

#[tokio::test]
async fn an_external_providers_audience_array_is_accepted_when_it_names_this_service() {
    let (app, private) = app_trusting_a_provider().await;
    let id = uuid::Uuid::new_v4();
    let mut listed = provider_claims(&id.to_string(), "Kang");
    listed["aud"] = json!(["account", "concert-tests"]);
    let me: Value = app
        .get_as(&rs256_claims(&private, &listed), &format!("/v1/users/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["userId"], id.to_string(), "{me}");
    let mut unlisted = provider_claims(&id.to_string(), "Kang");
    unlisted["aud"] = json!(["account", "another-api"]);
    let token = rs256_claims(&private, &unlisted);
    let p = unauthorized(app.get_as(&token, &format!("/v1/users/{id}")).await).await;
    assert_eq!(p["code"], "UNAUTHORIZED");
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn two_spellings_of_one_uuid_subject_are_two_users() {
    let (app, private) = app_trusting_a_provider().await;
    let id = uuid::Uuid::new_v4();
    let canonical = rs256(&private, &id.to_string(), "Canonical");
    let upper = rs256(&private, &id.to_string().to_uppercase(), "Upper");
    let urn = rs256(&private, &format!("urn:uuid:{id}"), "Urn");
    // The canonical spelling is the user id itself.
    let me = app.get_as(&canonical, &format!("/v1/users/{id}")).await;
    assert_eq!(me.status(), 200);
    // Other spellings are other subjects: the canonical one's account is not theirs.
    for token in [&upper, &urn] {
        let p = problem(app.get_as(token, &format!("/v1/users/{id}")).await, 404).await;
        assert_eq!(p["code"], "NOT_FOUND");
    }
    assert_eq!(app.scalar("SELECT count(*) FROM users").await, 3);
    // Each spelling's user reads its own account, under an id of its own.
    for (token, name) in [(&canonical, "Canonical"), (&upper, "Upper"), (&urn, "Urn")] {
        let user = user_named(&app, name).await;
        assert_eq!(
            user == id.to_string(),
            name == "Canonical",
            "{name}: {user}"
        );
        let me: Value = app
            .get_as(token, &format!("/v1/users/{user}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!((&me["userId"], &me["name"]), (&json!(user), &json!(name)));
    }
}

/// The id of the one user called `name`.
async fn user_named(app: &TestApp, name: &str) -> String {
    use sea_orm::ConnectionTrait;
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT id::text FROM users WHERE name = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reserves_racing_for_a_fans_last_allowed_seats_leave_one_winner() {
    let app = TestApp::builder().workers(2).spawn().await;
    let schedule = app.open_concert(1, 1_000).await["schedules"][0]["scheduleId"]
        .as_i64()
        .unwrap();
    for round in 0..5_i64 {
        let fan = app.active_fan().await;
        let base = round * 10 + 1;
        let first = app
            .final_job(
                &fan.access,
                &TestApp::accepted_job(app.reserve(&fan, schedule, &[base, base + 1], None).await)
                    .await,
            )
            .await;
        assert_eq!(first["status"], "SUCCEEDED", "{first}");
        // Two seats of headroom, two jobs of two seats each, at once.
        let ids =
            join_all([[base + 2, base + 3], [base + 4, base + 5]].map(|seats| {
                let (app, fan) = (&app, &fan);
                async move {
                    TestApp::accepted_job(app.reserve(fan, schedule, &seats, None).await).await
                }
            }))
            .await;
        let jobs = join_all(ids.iter().map(|id| app.final_job(&fan.access, id))).await;
        let won = jobs.iter().filter(|j| j["status"] == "SUCCEEDED").count();
        let capped = jobs
            .iter()
            .filter(|j| j["error"]["code"] == "SEAT_LIMIT_EXCEEDED")
            .count();
        assert_eq!((won, capped), (1, 1), "round {round}: {jobs:?}");
        let held = app
            .scalar(&format!(
                "SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id \
                 WHERE r.user_id = '{}' AND rs.reservation_status = 'HELD'",
                fan.user_id
            ))
            .await;
        assert_eq!(held, 4, "round {round}: the cap holds");
        // One more seat, alone: still over the cap, nothing held.
        let more = app
            .final_job(
                &fan.access,
                &TestApp::accepted_job(app.reserve(&fan, schedule, &[base + 6], None).await).await,
            )
            .await;
        assert_eq!(more["error"]["code"], "SEAT_LIMIT_EXCEEDED", "{more}");
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'HELD'")
            .await,
        20
    );
}
