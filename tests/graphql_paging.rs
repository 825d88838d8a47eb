//! Keyset paging over real HTTP: `first`/`after`, `pageInfo`, the default and zero page sizes,
//! cursors that belong to one connection only, and paging while imports commit.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestDb, TestServer, bygning, delete, uuid};
use serde_json::{Value, json};

/// `n` buildings `k{from}`.. in one package.
fn buildings(from: u32, n: u32, kommunekode: &str) -> Vec<Value> {
    (from..from + n)
        .map(|i| bygning(&format!("k{i}"), &uuid(i), kommunekode))
        .collect()
}

/// A database with `n` BBR building events (one package) and a server on it.
async fn with_events(n: u32) -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &buildings(1, n, "0101")))
        .await
        .unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

const EVENT_PAGE: &str = "query($first: Int, $after: String) {
  BBR_Events(first: $first, after: $after) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { eventid } }
    nodes { eventid }
  }
}";

/// One page of BBR events: (eventids, pageInfo, edge cursors).
async fn event_page(
    server: &TestServer,
    first: Option<i64>,
    after: Option<&str>,
) -> (Vec<i64>, Value, Vec<String>) {
    let data = server
        .data(EVENT_PAGE, json!({"first": first, "after": after}))
        .await;
    let connection = &data["BBR_Events"];
    let ids: Vec<i64> = connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["eventid"].as_i64().unwrap())
        .collect();
    let edges = connection["edges"].as_array().unwrap();
    let edge_ids: Vec<i64> = edges
        .iter()
        .map(|e| e["node"]["eventid"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, edge_ids, "nodes and edges list the same events");
    let cursors = edges
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect();
    (ids, connection["pageInfo"].clone(), cursors)
}

#[tokio::test]
async fn paging_through_events_with_first_and_after_returns_each_event_once_in_order() {
    let (_db, server) = with_events(25).await;

    let (first, info1, cursors1) = event_page(&server, Some(10), None).await;
    let end1 = info1["endCursor"].as_str().unwrap().to_owned();
    let (second, info2, _) = event_page(&server, Some(10), Some(&end1)).await;
    let end2 = info2["endCursor"].as_str().unwrap().to_owned();
    let (third, info3, cursors3) = event_page(&server, Some(10), Some(&end2)).await;
    let end3 = info3["endCursor"].as_str().unwrap().to_owned();
    let (after_last, info4, _) = event_page(&server, Some(10), Some(&end3)).await;

    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    assert_eq!(second, (11..=20).collect::<Vec<_>>());
    assert_eq!(third, (21..=25).collect::<Vec<_>>());
    assert!(after_last.is_empty());
    assert_eq!(info1["hasNextPage"], true);
    assert_eq!(info1["hasPreviousPage"], false);
    assert_eq!(info1["startCursor"], json!(cursors1[0]));
    assert_eq!(info1["endCursor"], json!(cursors1[9]));
    assert_eq!(info2["hasNextPage"], true);
    assert_eq!(info3["hasNextPage"], false);
    assert_eq!(info3["startCursor"], json!(cursors3[0]));
    assert_eq!(info3["endCursor"], json!(cursors3[4]));
    assert_eq!(info4["hasNextPage"], false);
    assert_eq!(info4["startCursor"], Value::Null);
    assert_eq!(info4["endCursor"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn paging_can_resume_from_any_edge_cursor() {
    let (_db, server) = with_events(12).await;
    let (_, _, cursors) = event_page(&server, Some(12), None).await;

    let (resumed, info, _) = event_page(&server, Some(3), Some(&cursors[6])).await;

    assert_eq!(resumed, vec![8, 9, 10]);
    assert_eq!(info["hasNextPage"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_last_page_that_is_exactly_full_says_no_next_page_follows() {
    let (_db, server) = with_events(20).await;

    let (first, info1, _) = event_page(&server, Some(10), None).await;
    let end1 = info1["endCursor"].as_str().unwrap().to_owned();
    let (second, info2, _) = event_page(&server, Some(10), Some(&end1)).await;

    assert_eq!(first.len(), 10);
    assert_eq!(second, (11..=20).collect::<Vec<_>>());
    assert_eq!(info2["hasNextPage"], false);
    server.stop().await;
}

#[tokio::test]
async fn first_defaults_to_a_page_of_one_hundred() {
    let (_db, server) = with_events(150).await;

    let (page, info, _) = event_page(&server, None, None).await;
    let end = info["endCursor"].as_str().unwrap().to_owned();
    let (rest, rest_info, _) = event_page(&server, None, Some(&end)).await;

    assert_eq!(page, (1..=100).collect::<Vec<_>>());
    assert_eq!(info["hasNextPage"], true);
    assert_eq!(rest, (101..=150).collect::<Vec<_>>());
    assert_eq!(rest_info["hasNextPage"], false);
    let rows = server
        .data("{ BBR_Bygning { nodes { id_lokalId } } }", json!({}))
        .await;
    assert_eq!(rows["BBR_Bygning"]["nodes"].as_array().unwrap().len(), 100);
    server.stop().await;
}

#[tokio::test]
async fn first_zero_returns_an_empty_page_that_says_whether_more_follow() {
    let (_db, server) = with_events(3).await;

    let (page, info, _) = event_page(&server, Some(0), None).await;
    let empty_register = server
        .data(
            "{ CVR_Events(first: 0) { nodes { eventid } pageInfo { hasNextPage startCursor endCursor } } }",
            json!({}),
        )
        .await;

    assert!(page.is_empty());
    assert_eq!(info["hasNextPage"], true);
    assert_eq!(info["startCursor"], Value::Null);
    assert_eq!(info["endCursor"], Value::Null);
    assert_eq!(
        empty_register["CVR_Events"],
        json!({"nodes": [], "pageInfo": {"hasNextPage": false, "startCursor": null, "endCursor": null}})
    );
    server.stop().await;
}

#[tokio::test]
async fn paging_a_filtered_event_list_returns_only_matching_events() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &buildings(1, 6, "0101")))
        .await
        .unwrap();
    let mut changed = buildings(1, 6, "0147");
    changed.retain(|row| row["key"] != "k3");
    db.import(&db.package("BBR", 2, &changed)).await.unwrap();
    let server = TestServer::start(&db).await;
    let query = r#"query($after: String) {
      BBR_Events(first: 2, after: $after, where: {eventaction: {eq: "u"}}) {
        pageInfo { hasNextPage endCursor } nodes { eventid }
      }
    }"#;

    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let data = server.data(query, json!({ "after": after })).await;
        let page = &data["BBR_Events"];
        seen.extend(
            page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["eventid"].as_i64().unwrap()),
        );
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }

    assert_eq!(seen, vec![7, 8, 9, 10, 11]);
    server.stop().await;
}

/// Every page of `BBR_Bygning(first, where)`: the row ids in page order.
async fn all_building_rows(server: &TestServer, first: i64, filter: &str) -> Vec<String> {
    let query = format!(
        "query($after: String) {{ BBR_Bygning(first: {first}, after: $after, where: {filter}) {{
            pageInfo {{ hasNextPage endCursor }} nodes {{ datafordelerRowId }} }} }}"
    );
    let mut rows = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = server.data(&query, json!({ "after": after })).await;
        let page = &data["BBR_Bygning"];
        let nodes = page["nodes"].as_array().unwrap();
        assert!(nodes.len() <= first as usize);
        rows.extend(
            nodes
                .iter()
                .map(|n| n["datafordelerRowId"].as_str().unwrap().to_owned()),
        );
        if page["pageInfo"]["hasNextPage"] == false {
            return rows;
        }
        assert_eq!(nodes.len(), first as usize, "only the last page is short");
        after = page["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn paging_through_entity_rows_returns_each_row_once_in_row_id_order() {
    let db = TestDb::new().await;
    let mut rows = buildings(1, 130, "0101");
    rows.extend(buildings(131, 120, "0147"));
    db.import(&db.package("BBR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;

    let all = all_building_rows(&server, 100, "{}").await;
    let filtered = all_building_rows(&server, 30, r#"{kommunekode: {eq: "0147"}}"#).await;

    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all.len(), 250);
    assert_eq!(sorted, all, "ascending datafordelerRowId, no repeats");
    assert_eq!(filtered.len(), 120);
    assert!(filtered.windows(2).all(|w| w[0] < w[1]));
    server.stop().await;
}

#[tokio::test]
async fn an_entity_cursor_stays_valid_after_its_row_is_deleted() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &buildings(1, 5, "0101")))
        .await
        .unwrap();
    let server = TestServer::start(&db).await;
    let query = "query($after: String) { BBR_Bygning(first: 2, after: $after) {
        pageInfo { endCursor } nodes { id_lokalId } } }";
    let first = server.data(query, json!({})).await;
    let cursor = first["BBR_Bygning"]["pageInfo"]["endCursor"].clone();
    assert_eq!(first["BBR_Bygning"]["nodes"][1]["id_lokalId"], uuid(2));

    db.import(&db.package("BBR", 2, &[delete("Bygning", "k2")]))
        .await
        .unwrap();
    let next = server.data(query, json!({ "after": cursor })).await;

    let ids: Vec<&Value> = next["BBR_Bygning"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id_lokalId"])
        .collect();
    assert_eq!(ids, [&json!(uuid(3)), &json!(uuid(4))]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_events_during_imports_returns_each_event_exactly_once() {
    let db = Arc::new(TestDb::new().await);
    let server = TestServer::start(&db).await;
    let packages = 15_u32;
    let per_package = 40;
    let importer = {
        let db = db.clone();
        tokio::spawn(async move {
            for seq in 1..=packages {
                let base = (seq - 1) * 100;
                let mut rows = buildings(base + 1, 30, "0101");
                if seq > 1 {
                    let previous = base - 100;
                    rows.extend(buildings(previous + 1, 5, "0147"));
                    rows.extend(
                        (26..=30).map(|i| delete("Bygning", &format!("k{}", previous + i))),
                    );
                }
                let path = db.package("BBR", i64::from(seq), &rows);
                db.import(&path).await.unwrap();
            }
        })
    };

    let mut seen: Vec<i64> = Vec::new();
    let mut after = Value::Null;
    let mut caught_up_while_importing = 0;
    let started = Instant::now();
    let expected_total = 30 + i64::from(packages - 1) * i64::from(per_package);
    while seen.len() < expected_total as usize || !importer.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "paging stalled"
        );
        let importing = !importer.is_finished();
        let data = server
            .data(
                "query($after: String) { BBR_Events(first: 7, after: $after) {
                    pageInfo { endCursor } nodes { eventid } } }",
                json!({ "after": after }),
            )
            .await;
        let page = &data["BBR_Events"];
        let ids: Vec<i64> = page["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["eventid"].as_i64().unwrap())
            .collect();
        if ids.is_empty() {
            if importing {
                caught_up_while_importing += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        seen.extend(ids);
        after = page["pageInfo"]["endCursor"].clone();
    }
    importer.await.unwrap();

    let (_, last_eventid, _) = db.register_state("BBR").await;
    assert_eq!(last_eventid, expected_total);
    assert_eq!(
        seen,
        (1..=last_eventid).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        caught_up_while_importing > 0,
        "the reader reached the newest event while imports still ran"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_of_another_connection_is_refused_with_bad_user_input() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &buildings(1, 3, "0101")))
        .await
        .unwrap();
    let server = TestServer::start(&db).await;
    let cursors = server
        .data(
            "{ BBR_Events(first: 1) { pageInfo { endCursor } } BBR_Bygning(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let event_cursor = cursors["BBR_Events"]["pageInfo"]["endCursor"].clone();
    let row_cursor = cursors["BBR_Bygning"]["pageInfo"]["endCursor"].clone();
    let forged = |text: &str| json!(URL_SAFE_NO_PAD.encode(text));

    let refused = [
        ("CVR_Events", event_cursor.clone()),
        ("BBR_Bygning", event_cursor.clone()),
        ("BBR_Enhed", row_cursor.clone()),
        ("BBR_Events", row_cursor.clone()),
        ("BBR_Events", json!("not a cursor")),
        ("BBR_Events", json!("")),
        ("BBR_Events", forged("BBR_Events:-1")),
        ("BBR_Events", forged("BBR_Events:1 OR 1=1")),
        (
            "BBR_Bygning",
            forged("BBR_Bygning:'; DROP TABLE registers; --"),
        ),
    ];
    for (field, cursor) in refused {
        let query = format!(
            "query($after: String) {{ {field}(after: $after) {{ nodes {{ __typename }} }} }}"
        );
        let code = server.error_code(&query, json!({ "after": cursor })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{field}(after: {cursor})");
    }
    let still = server
        .data(
            "query($after: String) { BBR_Events(after: $after) { nodes { eventid } } }",
            json!({ "after": event_cursor }),
        )
        .await;
    assert_eq!(
        still["BBR_Events"]["nodes"],
        json!([{"eventid": 2}, {"eventid": 3}])
    );
    server.stop().await;
}
