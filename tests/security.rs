//! Authentication and authorization end to end: the real server on port 0 over a real
//! PostgreSQL, real JWTs signed with test keys (tests/keys), real API keys made by the CLI.
//! Every refused credential gets its status and code, and never protected data.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, TestServer};
use fordeler::auth::{JwtConfig, JwtVerifier};
use fordeler::http::HttpConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.org";
const AUDIENCE: &str = "fordeler";
const PERSONS: &str = "{ CPR_Person(first: 5) { nodes { datafordelerRowId } } }";

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(key(name)).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(grants: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "system-a", "exp": now() + 600, "scope": grants})
}

fn rs256(claims: &Value, kid: Option<&str>, private: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(&read(private)).unwrap(),
    )
    .unwrap()
}

fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read("ec-private.pem")).unwrap();
    encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

/// A server accepting RS256 tokens by `kid` from tests/keys/jwks.json and ES256 tokens from
/// tests/keys/ec-public.pem, over a store with CPR and BBR data.
async fn setup() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    for register in ["CPR", "BBR"] {
        for file in db.generate(register, 1, 40, 3) {
            db.import(&file).await.unwrap();
        }
    }
    let jwt = JwtVerifier::load(&JwtConfig {
        jwks: Some(key("jwks.json")),
        public_keys: vec![key("ec-public.pem")],
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        leeway_seconds: 5,
        grants_claim: "scope".into(),
        ..JwtConfig::default()
    })
    .unwrap();
    let config = HttpConfig {
        jwt: Some(Arc::new(jwt)),
        ..HttpConfig::default()
    };
    let server = TestServer::start_with(&db, fordeler::graphql::Limits::default(), config).await;
    (db, server)
}

async fn ask(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = server
        .client
        .post(format!("{}/graphql", server.base))
        .json(&json!({"query": query}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let www = response.headers().get("www-authenticate").cloned();
    let body: Value = response.json().await.unwrap();
    if status == 401 {
        assert!(www.is_some(), "401 carries WWW-Authenticate: {body}");
    }
    (status, body)
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn has_rows(body: &Value) -> bool {
    body["data"]["CPR_Person"]["nodes"]
        .as_array()
        .is_some_and(|n| !n.is_empty())
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_and_no_data() {
    let (_db, server) = setup().await;
    let good = claims("CPR:Person");
    let bearer = |t: &str| format!("Bearer {t}");

    // The valid tokens work: RS256 by kid, ES256 by PEM.
    for token in [rs256(&good, Some("k1"), "rsa-private.pem"), es256(&good)] {
        let (status, body) = ask(&server, PERSONS, &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 200, "{body}");
        assert!(has_rows(&body), "{body}");
    }

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push(("malformed", "not.a.jwt".into()));
    cases.push(("garbage", "abc".into()));
    let valid = rs256(&good, Some("k1"), "rsa-private.pem");
    let mut parts: Vec<&str> = valid.split('.').collect();
    let tampered_claims = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims("*").to_string())
    };
    parts[1] = &tampered_claims;
    cases.push(("bad signature (claims changed)", parts.join(".")));
    cases.push((
        "wrong key",
        rs256(&good, Some("k1"), "other-rsa-private.pem"),
    ));
    cases.push(("unknown kid", rs256(&good, Some("nope"), "rsa-private.pem")));
    {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        cases.push((
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&good)
            ),
        ));
    }
    // HS/RS confusion: an HS256 token whose secret is the RSA public key.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&read("rsa-public.pem")),
    )
    .unwrap();
    cases.push(("HS256 signed with the public key", confused));
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 120);
    cases.push(("expired", rs256(&expired, Some("k1"), "rsa-private.pem")));
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    cases.push((
        "not yet valid",
        rs256(&early, Some("k1"), "rsa-private.pem"),
    ));
    let mut issuer = good.clone();
    issuer["iss"] = json!("https://evil.example.org");
    cases.push((
        "wrong issuer",
        rs256(&issuer, Some("k1"), "rsa-private.pem"),
    ));
    let mut audience = good.clone();
    audience["aud"] = json!("another-service");
    cases.push((
        "wrong audience",
        rs256(&audience, Some("k1"), "rsa-private.pem"),
    ));
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", rs256(&no_exp, Some("k1"), "rsa-private.pem")));

    for (name, token) in cases {
        let (status, body) = ask(&server, PERSONS, &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{name}: {body}");
        assert!(body.get("data").is_none(), "{name}: no data: {body}");
    }
    // Two credentials at once, and an unknown scheme.
    let token = rs256(&good, Some("k1"), "rsa-private.pem");
    let (status, _) = ask(
        &server,
        PERSONS,
        &[
            ("authorization", &bearer(&token)),
            ("x-api-key", "fordeler_x_y"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = ask(&server, PERSONS, &[("authorization", "Basic dXNlcjpwdw==")]).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn grants_decide_what_a_valid_credential_reads() {
    let (_db, server) = setup().await;
    // Anonymous: open data yes, CPR no.
    let (status, body) = ask(&server, PERSONS, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    assert!(body["data"].is_null() || !has_rows(&body), "{body}");
    let open = "{ BBR_Bygning(first: 1) { nodes { datafordelerRowId } } }";
    let (_, body) = ask(&server, open, &[]).await;
    assert!(body.get("errors").is_none(), "{body}");

    // A token without the grant: FORBIDDEN, for rows and for events.
    let token = rs256(&claims("openid BBR:*"), Some("k1"), "rsa-private.pem");
    let auth = format!("Bearer {token}");
    let (status, body) = ask(&server, PERSONS, &[("authorization", &auth)]).await;
    assert_eq!((status, code(&body)), (200, "FORBIDDEN"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no grant")
    );
    let events = "{ CPR_Events(first: 5) { nodes { eventid entityname } } }";
    let (_, body) = ask(&server, events, &[("authorization", &auth)]).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    // With the grant: rows and events.
    for grants in ["CPR:Person", "CPR:*", "*"] {
        let token = es256(&claims(grants));
        let auth = format!("Bearer {token}");
        let (_, body) = ask(&server, PERSONS, &[("authorization", &auth)]).await;
        assert!(has_rows(&body), "{grants}: {body}");
        let (_, body) = ask(&server, events, &[("authorization", &auth)]).await;
        let nodes = body["data"]["CPR_Events"]["nodes"].as_array().unwrap();
        assert!(!nodes.is_empty(), "{grants}: {body}");
    }
    // A grant for one entity: the unfiltered events hold that entity's only (streams use the
    // same hidden list); a filter naming another is FORBIDDEN.
    let auth = format!("Bearer {}", es256(&claims("CPR:Person")));
    let all = "{ CPR_Events(first: 1000) { nodes { entityname } } }";
    let (_, body) = ask(&server, all, &[("authorization", &auth)]).await;
    let names: std::collections::BTreeSet<&str> = body["data"]["CPR_Events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["entityname"].as_str().unwrap())
        .collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["Person"], "{body}");
    let (_, everything) = ask(
        &server,
        all,
        &[(
            "authorization",
            &format!("Bearer {}", es256(&claims("CPR:*"))),
        )],
    )
    .await;
    assert!(
        everything["data"]["CPR_Events"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["entityname"] != "Person"),
        "the store has events of other CPR entities: {everything}"
    );
    let other = "{ CPR_Events(where: {entityname: {eq: \"Adresse\"}}) { nodes { eventid } } }";
    let (_, body) = ask(&server, other, &[("authorization", &auth)]).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    // A list claim works too.
    let mut listed = claims("");
    listed["scope"] = json!(["CPR:Person"]);
    let token = rs256(&listed, Some("k1"), "rsa-private.pem");
    let (_, body) = ask(
        &server,
        PERSONS,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert!(has_rows(&body), "{body}");
    server.stop().await;
}

fn fordeler(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fordeler"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env(
            "FORDELER_REGISTERS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("registers"),
        )
        .output()
        .unwrap()
}

#[tokio::test]
async fn api_keys_work_until_revoked_or_expired_and_are_stored_hashed() {
    let (db, server) = setup().await;
    let made = fordeler(
        &db,
        &[
            "apikey",
            "create",
            "--owner",
            "system-b",
            "--grants",
            "CPR:Person",
            "--json",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();

    for headers in [
        vec![("x-api-key", key.clone())],
        vec![("authorization", format!("ApiKey {key}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, body) = ask(&server, PERSONS, &headers).await;
        assert_eq!(status, 200);
        assert!(has_rows(&body), "{body}");
    }
    // In the URL, Datafordeler style.
    let response = server
        .client
        .post(format!("{}/graphql?apiKey={key}", server.base))
        .json(&json!({"query": PERSONS}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(has_rows(&body), "{body}");

    // Only the hash is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_sha256 FROM api_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    let secret = key.rsplit('_').next().unwrap();
    let dump: String = sqlx::query_scalar("SELECT api_keys::text FROM api_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!dump.contains(secret), "the secret is not in the table");

    // A wrong secret for a real id, and a made-up key.
    let wrong = format!("{}x", &key[..key.len() - 1]);
    for bad in [
        wrong.as_str(),
        "fordeler_00000000000000000000000000000000_abc",
        "nonsense",
    ] {
        let (status, body) = ask(&server, PERSONS, &[("x-api-key", bad)]).await;
        assert_eq!(
            (status, code(&body)),
            (401, "UNAUTHENTICATED"),
            "{bad}: {body}"
        );
    }

    let listed = fordeler(&db, &["apikey", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["owner"], "system-b");
    assert!(!listed.to_string().contains(secret));

    let revoked = fordeler(&db, &["apikey", "revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let (status, body) = ask(&server, PERSONS, &[("x-api-key", &key)]).await;
    assert_eq!(status, 401);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let again = fordeler(&db, &["apikey", "revoke", &id]);
    assert!(!again.status.success());

    // An expired key.
    let made = fordeler(
        &db,
        &[
            "apikey", "create", "--owner", "c", "--grants", "CPR:*", "--json",
        ],
    );
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(made["id"].as_str().unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    let (status, body) = ask(
        &server,
        PERSONS,
        &[("x-api-key", made["key"].as_str().unwrap())],
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Bad grants are refused at creation.
    for grants in ["CPR", "XYZ:*", "CPR:Nope"] {
        let out = fordeler(
            &db,
            &["apikey", "create", "--owner", "d", "--grants", grants],
        );
        assert!(!out.status.success(), "{grants}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_subscription_completes_when_its_token_expires() {
    let (_db, server) = setup().await;
    let mut short = claims("CPR:*");
    short["exp"] = json!(now() + 3);
    let token = rs256(&short, Some("k1"), "rsa-private.pem");
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"query": "subscription { CPR_Events { eventid } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut sse = common::Sse::new(response);
    let started = std::time::Instant::now();
    let mut completed = false;
    while let Some(message) = sse.next_within(Duration::from_secs(30)).await {
        if message.event == "complete" {
            completed = true;
            break;
        }
    }
    assert!(completed, "the stream completed");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Without a grant, a subscription gets the error, then complete.
    let token = rs256(&claims("BBR:*"), Some("k1"), "rsa-private.pem");
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"query": "subscription { CPR_Events { eventid } }"}))
        .send()
        .await
        .unwrap();
    let mut sse = common::Sse::new(response);
    let mut first = sse.next_within(Duration::from_secs(10)).await.unwrap();
    while first.event != "next" {
        first = sse.next_within(Duration::from_secs(10)).await.unwrap();
    }
    assert_eq!(first.json()["errors"][0]["extensions"]["code"], "FORBIDDEN");
    server.stop().await;
}

#[test]
fn a_server_with_jwt_keys_needs_issuer_and_audience() {
    let error = JwtVerifier::load(&JwtConfig {
        jwks: Some(key("jwks.json")),
        ..JwtConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("--jwt-issuer"), "{error}");
    let short = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(short.path(), "too short").unwrap();
    let error = JwtVerifier::load(&JwtConfig {
        hs256_secret: Some(short.path().to_path_buf()),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..JwtConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("at least 32"), "{error}");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_go_on() {
    let db = TestDb::new().await;
    let config = HttpConfig {
        rate_limit: 2,
        rate_burst: 3,
        ..HttpConfig::default()
    };
    let server = TestServer::start_with(&db, fordeler::graphql::Limits::default(), config).await;
    let grants = fordeler::auth::Grants::parse("BBR:*").unwrap();
    let (key, _) = fordeler::auth::apikey::create(&db.pool, "k", &grants, None)
        .await
        .unwrap();
    let query = "{ RegisterImportStatus { register } }";
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = server
            .client
            .post(format!("{}/graphql", server.base))
            .json(&json!({"query": query}));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let response = send(vec![]).await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let seconds: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&seconds));
    // A credential has its own bucket.
    let with_key = send(vec![("x-api-key", key.clone())]).await.unwrap();
    assert_eq!(with_key.status(), 200);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    assert_eq!(
        send(vec![]).await.unwrap().status(),
        200,
        "after Retry-After"
    );
    server.stop().await;
}

#[tokio::test]
async fn reads_of_protected_entities_are_audited_and_open_reads_are_not() {
    let (db, server) = setup().await;
    let grants = fordeler::auth::Grants::parse("CPR:* BBR:*").unwrap();
    let (key, id) = fordeler::auth::apikey::create(&db.pool, "auditor", &grants, None)
        .await
        .unwrap();
    let auth = [("x-api-key", key.as_str())];
    let (_, persons) = ask(&server, PERSONS, &auth).await;
    let returned = persons["data"]["CPR_Person"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    let (_, events) = ask(
        &server,
        "{ CPR_Events(first: 7) { nodes { eventid } } }",
        &auth,
    )
    .await;
    assert_eq!(
        events["data"]["CPR_Events"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    ask(
        &server,
        "{ BBR_Bygning(first: 3) { nodes { datafordelerRowId } } }",
        &auth,
    )
    .await;
    ask(&server, PERSONS, &[]).await; // anonymous and refused: nothing read

    let credential = format!("apikey:{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = fordeler::auth::audit::query(
            &db.pool,
            chrono::Utc::now() - chrono::Duration::minutes(5),
            None,
            100,
        )
        .await
        .unwrap();
        let events: i64 = records
            .iter()
            .filter(|r| r.operation == "events")
            .map(|r| r.rows)
            .sum();
        let rows = records.iter().any(|r| r.operation == "rows");
        if (events == 7 && rows) || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen: Vec<(String, String, String, i64)> = records
        .iter()
        .map(|r| {
            (
                r.credential.clone(),
                r.entity.clone(),
                r.operation.clone(),
                r.rows,
            )
        })
        .collect();
    seen.sort();
    let events_rows: i64 = records
        .iter()
        .filter(|r| r.operation == "events")
        .map(|r| r.rows)
        .sum();
    assert_eq!(events_rows, 7, "{seen:?}");
    assert!(
        seen.contains(&(
            credential.clone(),
            "Person".into(),
            "rows".into(),
            returned as i64
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.0 == credential),
        "only the credential's reads: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.1 != "Bygning"),
        "open data is not audited: {seen:?}"
    );

    let out = fordeler(&db, &["audit", "--credential", &credential, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), records.len());
    server.stop().await;
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let db = TestDb::new().await;
    let preflight = |server: &TestServer, origin: &str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", server.base))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let default = TestServer::start(&db).await;
    let response = preflight(&default, "https://app.example.org")
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    default.stop().await;

    let config = HttpConfig {
        cors_origins: vec!["https://app.example.org".parse().unwrap()],
        ..HttpConfig::default()
    };
    let server = TestServer::start_with(&db, fordeler::graphql::Limits::default(), config).await;
    let response = preflight(&server, "https://app.example.org").await.unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("x-api-key"), "{allowed}");
    let other = preflight(&server, "https://evil.example.org")
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test]
async fn query_bombs_are_refused_while_a_credentialed_client_keeps_being_served() {
    let (db, server) = setup().await;
    let grants = fordeler::auth::Grants::parse("CPR:*").unwrap();
    let (key, _) = fordeler::auth::apikey::create(&db.pool, "steady", &grants, None)
        .await
        .unwrap();
    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "fields { type { ofType { ".repeat(100),
        " } } }".repeat(100)
    );
    let nested_or = (0..3000).fold("{eventid: {gt: 0}}".to_owned(), |inner, _| {
        format!("{{or: [{inner}]}}")
    });
    let aliases: String = (0..500)
        .map(|n| format!("a{n}: RegisterImportStatus {{ register }} "))
        .collect();
    let ids: Vec<String> = (0..100_000).map(|n| format!("\"{n}\"")).collect();
    let bombs: Vec<String> = vec![
        json!({"query": format!("{{ BBR_Events(where: {nested_or}) {{ nodes {{ eventid }} }} }}")}).to_string(),
        json!({"query": format!("{{ {aliases} }}")}).to_string(),
        json!({"query": format!("{{ BBR_Events(where: {{object_id: {{in: [{}]}}}}) {{ nodes {{ eventid }} }} }}", ids.join(","))}).to_string(),
        json!({"query": "{ BBR_Events(first: 1000000000) { nodes { eventid } } }"}).to_string(),
        json!({"query": format!("{{ {} }}", "BBR_Events { nodes { eventid } } ".repeat(2000))}).to_string(),
        json!({"query": deep, "pad": "x".repeat(50 * 1024 * 1024)}).to_string(),
    ];
    let barrage = {
        let (client, base) = (server.client.clone(), server.base.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                for bomb in &bombs {
                    let response = client
                        .post(format!("{base}/graphql"))
                        .header("content-type", "application/json")
                        .body(bomb.clone())
                        .send()
                        .await;
                    let Ok(response) = response else {
                        statuses.push(0); // the server may close a connection sending 50 MB
                        continue;
                    };
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    assert!(
                        body.get("data").is_none_or(Value::is_null),
                        "refused: {body}"
                    );
                    if status == 200 {
                        assert!(body["errors"].is_array(), "an error says why: {body}");
                    }
                    statuses.push(status);
                }
            }
            statuses
        })
    };
    let mut served = 0;
    while !barrage.is_finished() || served < 20 {
        let (status, body) = ask(&server, PERSONS, &[("x-api-key", &key)]).await;
        assert_eq!(status, 200, "{body}");
        assert!(has_rows(&body), "{body}");
        served += 1;
    }
    let statuses = barrage.await.unwrap();
    assert_eq!(statuses.len(), 18, "every bomb was answered or cut off");
    assert!(
        statuses.contains(&413) || statuses.contains(&0),
        "the 50 MB body: {statuses:?}"
    );
    server.stop().await;
}
