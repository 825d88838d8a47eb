//! Subscriptions over Server-Sent Events, end to end: a real server on port 0, real imports into
//! a real PostgreSQL, and real HTTP streaming clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Sse, TestDb, TestServer, bygning, delete};
use fordeler::live::LiveConfig;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

const PLAIN: &str = "subscription { BBR_Events { eventid entityname eventaction \
    datafordelerRegisterImportSequenceNumber object_id } }";

/// Publishes as soon as an import commits.
fn immediate() -> LiveConfig {
    LiveConfig {
        publish_interval: Duration::ZERO,
        ..LiveConfig::default()
    }
}

/// Imports BBR package `seq` with Bygning rows `keys`.
async fn import_bygninger(db: &TestDb, seq: i64, keys: std::ops::Range<u32>) {
    let rows: Vec<Value> = keys
        .map(|k| bygning(&format!("b{k}"), &common::uuid(k), "0101"))
        .collect();
    db.import(&db.package("BBR", seq, &rows)).await.unwrap();
}

/// The eventids of `register`'s events in the database that `keep` selects.
async fn stored_ids(db: &TestDb, register: &str, keep: impl Fn(&Value) -> bool) -> Vec<i64> {
    db.events(register)
        .await
        .iter()
        .filter(|e| keep(e))
        .map(|e| e["eventid"].as_i64().unwrap())
        .collect()
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn every_event_arrives_as_one_next_message_with_its_eventid() {
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    let mut stream = server.subscribe(PLAIN, json!({}), None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    let first = stream.next_within(WAIT).await.unwrap();
    assert_eq!(
        first.retry,
        Some(2000),
        "the stream opens with retry: {first:?}"
    );

    import_bygninger(&db, 1, 0..3).await;
    import_bygninger(&db, 2, 3..5).await;
    let events = stream.events(5, WAIT).await;
    let ids: Vec<i64> = events.iter().map(|m| m.eventid()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    for (message, id) in events.iter().zip(1..) {
        let event = &message.json()["data"]["BBR_Events"];
        assert_eq!(event["eventid"], id, "{message:?}");
        assert_eq!(event["entityname"], "Bygning");
        assert_eq!(event["eventaction"], "i");
        let seq = if id <= 3 { 1 } else { 2 };
        assert_eq!(event["datafordelerRegisterImportSequenceNumber"], seq);
        assert!(message.json().get("errors").is_none());
    }
    assert!(metric(&server, "fordeler_subscription_events_delivered_total").await >= 5.0);
    assert_eq!(metric(&server, "fordeler_subscribers{").await, 1.0);
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn any_selection_streams_through_the_general_executor_alike() {
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    let query = "subscription Watch($where: BBR_EventsFilterInput) { \
        changes: BBR_Events(where: $where) { __typename ...E action: eventaction } } \
        fragment E on BBR_Events { eventid object_id }";
    let variables = json!({"where": {"eventaction": {"in": ["u", "d"]}}});
    let mut general = server.subscribe(query, variables, None).await;
    let mut plain = server
        .subscribe(
            "subscription { BBR_Events(where: {eventaction: {in: [\"u\", \"d\"]}}) { eventid } }",
            json!({}),
            None,
        )
        .await;
    import_bygninger(&db, 1, 0..3).await;
    let update = vec![
        bygning("b1", &common::uuid(1), "0202"),
        delete("Bygning", "b2"),
    ];
    db.import(&db.package("BBR", 2, &update)).await.unwrap();

    let got = general.events(2, WAIT).await;
    let ids: Vec<i64> = got.iter().map(|m| m.eventid()).collect();
    assert_eq!(ids, vec![4, 5]);
    let first = &got[0].json()["data"]["changes"];
    assert_eq!(first["__typename"], "BBR_Events");
    assert_eq!(first["action"], "u");
    assert_eq!(first["eventid"], 4);
    assert_eq!(first["object_id"], common::uuid(1));
    assert_eq!(got[1].json()["data"]["changes"]["action"], "d");
    let plain_ids: Vec<i64> = plain
        .events(2, WAIT)
        .await
        .iter()
        .map(|m| m.eventid())
        .collect();
    assert_eq!(plain_ids, ids);
    server.stop().await;
}

#[tokio::test]
async fn filters_on_entity_and_action_are_honoured_as_in_queries() {
    let db = TestDb::new().await;
    let files = db.generate("BBR", 4, 80, 5);
    let server = TestServer::start_live(&db, immediate()).await;
    let filters = [
        json!({"entityname": {"eq": "Bygning"}}),
        json!({"eventaction": {"in": ["u", "d"]}}),
        json!({"or": [{"entityname": {"eq": "Enhed"}}, {"eventaction": {"eq": "d"}}]}),
        // Every event: this one gets each batch's shared rendering of all its events, while
        // the others get their subsets of the same batch.
        Value::Null,
    ];
    let query = "subscription($w: BBR_EventsFilterInput) { BBR_Events(where: $w) { eventid } }";
    let mut streams = Vec::new();
    for filter in &filters {
        streams.push(server.subscribe(query, json!({"w": filter}), None).await);
    }
    for file in &files {
        db.import(file).await.unwrap();
    }
    let expected = [
        stored_ids(&db, "BBR", |e| e["entityname"] == "Bygning").await,
        stored_ids(&db, "BBR", |e| e["eventaction"] != "i").await,
        stored_ids(&db, "BBR", |e| {
            e["entityname"] == "Enhed" || e["eventaction"] == "d"
        })
        .await,
        stored_ids(&db, "BBR", |_| true).await,
    ];
    for ((stream, want), filter) in streams.iter_mut().zip(&expected).zip(&filters) {
        assert!(
            !want.is_empty(),
            "the generated history has events for {filter}"
        );
        let got: Vec<i64> = stream
            .events(want.len(), WAIT)
            .await
            .iter()
            .map(|m| m.eventid())
            .collect();
        assert_eq!(&got, want, "filter {filter}");
    }
    // The same filter as a query selects the same events.
    let page = server
        .data(
            "{ BBR_Events(first: 1000, where: {eventaction: {in: [\"u\", \"d\"]}}) { nodes { eventid } } }",
            json!({}),
        )
        .await;
    let queried: Vec<i64> = page["BBR_Events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["eventid"].as_i64().unwrap())
        .collect();
    assert_eq!(queried, expected[1]);
    server.stop().await;
}

#[tokio::test]
async fn request_errors_come_as_a_next_message_then_complete() {
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    let cases = [
        (
            "subscription { BBR_Events { nosuchfield } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "subscription { BBR_Events { eventid ",
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "subscription { BBR_Events(where: {kommunekode: {eq: 1}}) { eventid } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "subscription { BBR_Events(where: {eventid: {gt: \"x\"}}) { eventid } }",
            "BAD_USER_INPUT",
        ),
        // Protected register: no events without a grant.
        ("subscription { CPR_Events { eventid } }", "FORBIDDEN"),
        (
            "subscription { a: BBR_Events { eventid } b: CVR_Events { eventid } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (query, code) in cases {
        let mut stream = server.subscribe(query, json!({}), None).await;
        assert_eq!(stream.status, 200, "{query}");
        let mut messages = Vec::new();
        while let Some(message) = stream.next_within(WAIT).await {
            if message.retry.is_none() {
                messages.push(message);
            }
        }
        assert_eq!(messages.len(), 2, "{query}: {messages:?}");
        assert_eq!(messages[0].event, "next");
        let body = messages[0].json();
        assert_eq!(
            body["errors"][0]["extensions"]["code"], code,
            "{query}: {body}"
        );
        // Refused before execution: no data; refused by the resolver: data null.
        assert!(body["data"].is_null(), "{query}: {body}");
        assert_eq!(messages[1].event, "complete");
        assert_eq!(messages[1].data, "");
    }
    // A query over SSE is one result, then complete.
    let mut stream = server
        .subscribe("{ RegisterImportStatus { register } }", json!({}), None)
        .await;
    let events = stream.events(1, WAIT).await;
    assert!(events[0].json()["data"]["RegisterImportStatus"].is_array());
    assert_eq!(stream.next_within(WAIT).await.unwrap().event, "complete");
    // A malformed Last-Event-ID is refused before the stream.
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("accept", "text/event-stream")
        .header("last-event-id", "-3")
        .json(&json!({"query": PLAIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
    server.stop().await;
}

#[tokio::test]
async fn an_event_source_can_subscribe_with_get() {
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    import_bygninger(&db, 1, 0..2).await;
    let query = "subscription { BBR_Events(where: {eventid: {gt: 0}}) { eventid } }";
    let response = server
        .client
        .get(format!("{}/graphql", server.base))
        .query(&[("query", query)])
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut stream = Sse::new(response);
    assert_eq!(stream.status, 200);
    let ids: Vec<i64> = stream
        .events(2, WAIT)
        .await
        .iter()
        .map(|m| m.eventid())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    server.stop().await;
}

#[tokio::test]
async fn the_interval_batches_reads_whatever_the_number_of_subscribers() {
    let db = TestDb::new().await;
    let live = LiveConfig {
        publish_interval: Duration::from_millis(1500),
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let started = std::time::Instant::now();
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(server.subscribe(PLAIN, json!({}), None).await);
    }
    import_bygninger(&db, 1, 0..4).await;
    import_bygninger(&db, 2, 4..8).await;
    for stream in &mut streams {
        let ids: Vec<i64> = stream
            .events(8, WAIT)
            .await
            .iter()
            .map(|m| m.eventid())
            .collect();
        assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    }
    let elapsed = started.elapsed();
    let reads = metric(
        &server,
        "fordeler_subscription_reader_query_seconds_count{register=\"BBR\"}",
    )
    .await;
    let ticks = (elapsed.as_millis() / 1500) as f64;
    assert!(
        reads >= 1.0 && reads <= ticks + 1.0,
        "{reads} reads in {elapsed:?}"
    );
    assert!(reads < 20.0, "reads grow with subscribers: {reads}");
    assert_eq!(
        metric(&server, "fordeler_subscription_catch_ups_total").await,
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn streams_complete_at_their_limit_with_keep_alives_before() {
    let db = TestDb::new().await;
    let live = LiveConfig {
        publish_interval: Duration::ZERO,
        stream_limit: Duration::from_millis(1200),
        keep_alive: Duration::from_millis(100),
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let mut stream = server.subscribe(PLAIN, json!({}), None).await;
    let mut last = None;
    while let Some(message) = stream.next_within(WAIT).await {
        last = Some(message);
    }
    assert_eq!(last.unwrap().event, "complete");
    assert!(stream.comments >= 3, "keep-alives: {}", stream.comments);
    server.stop().await;
}

/// A client that reconnects with `Last-Event-ID` after every completed or dropped stream, while
/// imports run, receives each matching event exactly once, in order.
#[tokio::test]
async fn resuming_with_last_event_id_during_imports_loses_and_repeats_nothing() {
    let db = TestDb::new().await;
    let files = db.generate("BBR", 12, 60, 9);
    let live = LiveConfig {
        publish_interval: Duration::from_millis(50),
        stream_limit: Duration::from_millis(400),
        read_page: 7,
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let importer = {
        let url = db.url.clone();
        let registry = db.registry.clone();
        tokio::spawn(async move {
            let mut conn = fordeler::import::connect(&url).await.unwrap();
            for file in files {
                fordeler::import::import_package(
                    &mut conn,
                    &registry,
                    &file,
                    &fordeler::import::Quiet,
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    for (query, bygning_only) in [
        (
            "subscription { BBR_Events(where: {eventid: {gt: 0}}) { eventid } }",
            false,
        ),
        (
            "subscription { BBR_Events(where: {eventid: {gt: 0}, entityname: {eq: \"Bygning\"}}) { eventid entityname } }",
            true,
        ),
    ] {
        let mut received: Vec<i64> = Vec::new();
        let mut reconnects = 0;
        loop {
            let last = received.last().copied();
            let mut stream = server.subscribe(query, json!({}), last).await;
            assert_eq!(stream.status, 200);
            loop {
                let Some(message) = stream.next_within(WAIT).await else {
                    break;
                };
                match message.event.as_str() {
                    "next" => {
                        if bygning_only {
                            assert_eq!(
                                message.json()["data"]["BBR_Events"]["entityname"],
                                "Bygning"
                            );
                        }
                        received.push(message.eventid());
                        // Now and then, drop the connection mid-stream.
                        if received.len().is_multiple_of(97) {
                            break;
                        }
                    }
                    "complete" => break,
                    _ => {}
                }
            }
            reconnects += 1;
            if importer.is_finished() {
                let want = stored_ids(&db, "BBR", |e| {
                    !bygning_only || e["entityname"] == "Bygning"
                })
                .await;
                if received.len() >= want.len() {
                    assert_eq!(received, want, "exactly once, in order");
                    break;
                }
            }
            assert!(reconnects < 500, "no progress: {} events", received.len());
        }
        assert!(reconnects > 2, "the test reconnected {reconnects} times");
    }
    importer.await.unwrap();
    assert!(metric(&server, "fordeler_subscription_catch_ups_total").await > 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_position_beyond_the_head_waits_for_later_events() {
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    import_bygninger(&db, 1, 0..2).await;
    let mut stream = server.subscribe(PLAIN, json!({}), Some(4)).await;
    import_bygninger(&db, 2, 2..6).await;
    let ids: Vec<i64> = stream
        .events(2, WAIT)
        .await
        .iter()
        .map(|m| m.eventid())
        .collect();
    assert_eq!(ids, vec![5, 6]);
    // And eventid gt N replays the events after N from the database.
    let mut replay = server
        .subscribe(
            "subscription { BBR_Events(where: {eventid: {gt: 3}}) { eventid } }",
            json!({}),
            None,
        )
        .await;
    let ids: Vec<i64> = replay
        .events(3, WAIT)
        .await
        .iter()
        .map(|m| m.eventid())
        .collect();
    assert_eq!(ids, vec![4, 5, 6]);
    server.stop().await;
}

/// A client that stops reading does not hold up the others; once it reads again it gets every
/// event, caught up from the database rather than buffered by the server.
#[tokio::test]
async fn a_stalled_subscriber_delays_no_one_and_catches_up_from_the_database() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new().await;
    let files = db.generate("BBR", 3, 4000, 3);
    let live = LiveConfig {
        publish_interval: Duration::ZERO,
        read_page: 100,
        buffer_batches: 4,
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    // The stalled client: a raw connection that sends its request and reads nothing.
    let address = server.base.trim_start_matches("http://").to_owned();
    // A small receive buffer, so that the server's writes block soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    let mut stalled = socket.connect(address.parse().unwrap()).await.unwrap();
    let all_fields = "subscription { BBR_Events { eventid entityname eventaction \
        datafordelerRegisterImportSequenceNumber datafordelerOpdateringstid fromfailedimport \
        object_id object_datafordelerRowId object_datafordelerRowVersion object_registreringfra \
        object_registreringtil object_status object_virkningfra object_virkningtil } }";
    let body = json!({"query": all_fields}).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    // Its subscription is open once the server counts it.
    while metric(&server, "fordeler_subscribers{").await < 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reader = server.subscribe(all_fields, json!({}), None).await;
    for file in &files {
        db.import(file).await.unwrap();
    }
    let want = stored_ids(&db, "BBR", |_| true).await;
    let got: Vec<i64> = reader
        .events(want.len(), WAIT)
        .await
        .iter()
        .map(|m| m.eventid())
        .collect();
    assert_eq!(
        got, want,
        "the reading client got everything while the other stalled"
    );

    // Now read the stalled stream: every event, in order, once.
    let mut raw = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let last = format!("id: {}\n", want.last().unwrap());
    while !String::from_utf8_lossy(&raw[raw.len().saturating_sub(200_000)..]).contains(&last) {
        let n = tokio::time::timeout(WAIT, stalled.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stalled stream ended");
        raw.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.trim().parse().unwrap())
        .collect();
    assert_eq!(ids, want);
    // It fell behind the broadcast buffer (a few batches, shared): the server kept nothing for
    // it and read its events from the database instead.
    let lagged = metric(
        &server,
        "fordeler_subscription_catch_ups_total{reason=\"lagged\",register=\"BBR\"}",
    )
    .await;
    assert!(
        lagged >= 1.0,
        "the stalled client fell back to the database"
    );
    server.stop().await;
}

#[tokio::test]
async fn stream_limits_give_429_with_retry_after() {
    let db = TestDb::new().await;
    let live = LiveConfig {
        publish_interval: Duration::ZERO,
        keep_alive: Duration::from_millis(100),
        max_streams_per_client: 2,
        max_streams: 3,
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let first = server.subscribe(PLAIN, json!({}), None).await;
    let _second = server.subscribe(PLAIN, json!({}), None).await;
    let refused = server.subscribe(PLAIN, json!({}), None).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.contains_key("retry-after"));
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("accept", "text/event-stream")
        .json(&json!({"query": PLAIN}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("per client")
    );
    // A closed stream frees its place (at the latest with the next keep-alive write).
    drop(first);
    let mut admitted = None;
    for _ in 0..100 {
        let stream = server.subscribe(PLAIN, json!({}), None).await;
        if stream.status == 200 {
            admitted = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admitted.is_some(),
        "a closed stream's place was never freed"
    );
    // Queries are not streams: they still work.
    server
        .data("{ RegisterImportStatus { register } }", json!({}))
        .await;
    assert!(metric(&server, "fordeler_streams_refused_total").await >= 2.0);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_completes_every_stream() {
    let db = TestDb::new().await;
    let mut server = TestServer::start_live(&db, immediate()).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = server.subscribe(PLAIN, json!({}), None).await;
        assert!(stream.next_within(WAIT).await.unwrap().retry.is_some());
        streams.push(stream);
    }
    server.begin_stop();
    for stream in &mut streams {
        let message = stream.next_within(WAIT).await.unwrap();
        assert_eq!(message.event, "complete");
        assert!(
            stream.next_within(WAIT).await.is_none(),
            "the stream ends after complete"
        );
    }
    server.stop().await;
}

/// CPR's municipality fields (`object_kommunekodenuvaerende` / `...tidligere`), evaluated in
/// memory on the live feed: a subscriber to moves into or out of municipality 0101 gets exactly
/// the events a query with that filter selects. (This subscribes through the library's hub,
/// below the access check; `tests/security.rs` covers CPR subscriptions with credentials.)
#[tokio::test]
async fn cpr_municipality_filters_are_honoured_on_the_live_feed() {
    use fordeler::query::events::columns;
    use fordeler::query::{Filter, Scalar, Test};
    let db = TestDb::new().await;
    let cpr = db.registry.get("CPR").unwrap().clone();
    let api = fordeler::graphql::Api::with_live(
        db.pool.clone(),
        std::sync::Arc::new(db.registry.clone()),
        fordeler::graphql::Limits::default(),
        immediate(),
        fordeler::metrics::Metrics::new(),
    );
    let column = |name: &str| columns(&cpr).into_iter().find(|c| c.name == name).unwrap();
    let code = || Test::Eq(Scalar::Text("0101".into()));
    let filter = Filter::Any(vec![
        Filter::Cond(column("object_kommunekodenuvaerende"), code()),
        Filter::Cond(column("object_kommunekodetidligere"), code()),
    ]);
    let mut source = api
        .live()
        .subscribe("CPR", filter, Vec::new(), None)
        .await
        .unwrap();
    let person = |key: &str, kommunekode: &str| {
        json!({"entity": "Person", "op": "upsert", "key": key,
            "registreringFra": "2026-01-01T00:00:00Z", "virkningFra": "2020-01-01T00:00:00Z",
            "attributes": {"personnummer": format!("01019012{:02}", key.len()), "kommunekode": kommunekode}})
    };
    let packages = [
        vec![person("p1", "0101"), person("p22", "0202")],
        vec![person("p1", "0303"), person("p22", "0101")],
        vec![person("p1", "0404"), delete("Person", "p22")],
    ];
    for (seq, rows) in packages.iter().enumerate() {
        db.import(&db.package("CPR", seq as i64 + 1, rows))
            .await
            .unwrap();
    }
    let want: Vec<i64> = stored_ids(&db, "CPR", |e| {
        e["object_kommunekodenuvaerende"] == "0101" || e["object_kommunekodetidligere"] == "0101"
    })
    .await;
    assert_eq!(want.len(), 4, "{:?}", db.events("CPR").await);
    let mut got = Vec::new();
    while got.len() < want.len() {
        let delivery = tokio::time::timeout(WAIT, source.next())
            .await
            .unwrap()
            .unwrap();
        got.extend(delivery.events().map(|e| e.eventid));
    }
    assert_eq!(got, want);
}

/// Reads from `socket` until `done` holds for what arrived, or the server closes; returns it.
async fn read_until(
    socket: &mut tokio::net::TcpStream,
    done: impl Fn(&str) -> bool,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if done(&text) {
            return (text, false);
        }
        let n = tokio::time::timeout(WAIT, socket.read(&mut buffer))
            .await
            .expect("the server answered in time")
            .unwrap();
        if n == 0 {
            return (text, true);
        }
        raw.extend_from_slice(&buffer[..n]);
    }
}

/// Event streams have a lean HTTP/1.1 path (plain `Content-Length` requests) besides hyper's
/// (everything else: a chunked request body, a connection that asked other things first). Both
/// deliver the same messages; the lean one frames them as chunks and closes after `complete`.
#[tokio::test]
async fn event_streams_are_served_alike_on_either_http_path() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new().await;
    let live = LiveConfig {
        publish_interval: Duration::ZERO,
        stream_limit: Duration::from_secs(3),
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let body = json!({"query": PLAIN}).to_string();
    let head = |extra: &str| {
        format!(
            "POST /graphql HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream\r\n\
             content-type: application/json\r\n{extra}\r\n"
        )
    };
    let lean = format!(
        "{}{body}",
        head(&format!("content-length: {}\r\n", body.len()))
    );
    let chunked = format!(
        "{}{:x}\r\n{body}\r\n0\r\n\r\n",
        head("transfer-encoding: chunked\r\n"),
        body.len()
    );
    let query = json!({"query": "{ RegisterImportStatus { register } }"}).to_string();
    let query_first = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{query}{lean}",
        query.len()
    );
    let mut sockets = Vec::new();
    for request in [&lean, &chunked, &query_first] {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    while metric(&server, "fordeler_subscribers{").await < 3.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    import_bygninger(&db, 1, 0..2).await;
    for (socket, path) in sockets
        .iter_mut()
        .zip(["lean", "chunked body", "after a query"])
    {
        // The lean path ends the chunked body and closes the connection after `complete`.
        let lean = path == "lean";
        let (text, closed) = read_until(socket, |t| !lean && t.contains("event: complete")).await;
        assert!(
            text.contains("event: complete"),
            "{path}: completed: {text}"
        );
        assert!(
            !lean || (closed && text.ends_with("\r\n0\r\n\r\n")),
            "{path}: closed: {text:?}"
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{path}: {text}"
        );
        let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert_eq!(
            head.contains("connection: close"),
            lean,
            "{path}: the lean path (only) announces the close: {head}"
        );
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .collect();
        assert_eq!(ids, ["1", "2"], "{path}: both events, once each: {text}");
        assert!(text.contains("\"eventid\":2"), "{path}: {text}");
    }
    server.stop().await;
}

/// With an interval, the reader reads at most once per interval: an import committed after a
/// quiet interval is published at once, one committed right after it waits for the interval.
#[tokio::test]
async fn a_commit_after_a_quiet_interval_is_published_at_once_and_later_ones_wait() {
    let db = TestDb::new().await;
    let interval = Duration::from_secs(5);
    let live = LiveConfig {
        publish_interval: interval,
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    let mut stream = server.subscribe(PLAIN, json!({}), None).await;
    // Quiet for longer than the interval.
    tokio::time::sleep(interval + Duration::from_millis(500)).await;
    let committed = std::time::Instant::now();
    import_bygninger(&db, 1, 0..2).await;
    let first = stream.events(2, WAIT).await;
    let published = std::time::Instant::now();
    assert_eq!(
        first.iter().map(|m| m.eventid()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(
        published - committed < interval - Duration::from_secs(1),
        "published at once, not at the next interval: {:?}",
        published - committed
    );
    import_bygninger(&db, 2, 2..4).await;
    let second = stream.events(2, WAIT).await;
    assert_eq!(
        second.iter().map(|m| m.eventid()).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(
        published.elapsed() >= interval - Duration::from_secs(1),
        "the second import waited for the interval: {:?}",
        published.elapsed()
    );
    server.stop().await;
}
