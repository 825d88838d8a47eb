//! The events fast path answers exactly as the general resolvers do, byte for byte once parsed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{TestDb, bygning, delete, uuid};
use serde_json::{Value, json};

/// Starts the server over `db`; `fast` chooses whether the events fast path is on.
async fn server(db: &TestDb, fast: bool) -> String {
    let api = fordeler::graphql::Api::new(
        db.pool.clone(),
        Arc::new(db.registry.clone()),
        fordeler::graphql::Limits::default(),
        fordeler::metrics::Metrics::new(),
    );
    if !fast {
        api.disable_fast_path();
    }
    let state = fordeler::http::AppState::new(&api, fordeler::http::HttpConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(fordeler::http::serve(
        listener,
        fordeler::http::router(state),
        std::future::pending(),
    ));
    base
}

async fn post(base: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_fast_path_and_the_general_resolvers_give_the_same_answers() {
    let db = TestDb::new().await;
    let first: Vec<Value> = (1..=30)
        .map(|n| bygning(&format!("b{n}"), &uuid(n), "0101"))
        .collect();
    db.import(&db.package("BBR", 1, &first)).await.unwrap();
    let mut second: Vec<Value> = (1..=10)
        .map(|n| bygning(&format!("b{n}"), &uuid(n), "0147"))
        .collect();
    second.push(delete("Bygning", "b30"));
    db.import(&db.package("BBR", 2, &second)).await.unwrap();
    let fast = server(&db, true).await;
    let general = server(&db, false).await;

    let all = "eventid entityname eventaction datafordelerRegisterImportSequenceNumber \
               datafordelerOpdateringstid fromfailedimport object_id object_datafordelerRowId \
               object_datafordelerRowVersion object_registreringfra object_registreringtil \
               object_status object_virkningfra object_virkningtil";
    let queries = [
        format!("{{ BBR_Events {{ nodes {{ {all} }} pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"),
        format!("query($last: Long!) {{ e: BBR_Events(first: 7, where: {{eventid: {{gt: $last}}}}) {{ pi: pageInfo {{ endCursor hasNextPage }} n: nodes {{ id: eventid action: eventaction {all} }} }} }}"),
        "query Q($a: [String!]) { BBR_Events(first: 5, where: {or: [{eventaction: {in: $a}}, {eventid: {lte: 2}}]}) { nodes { eventid eventaction object_status } } }".to_owned(),
        "{ BBR_Events(first: 3, where: {entityname: {eq: \"Enhed\"}}) { pageInfo { startCursor endCursor hasNextPage } nodes { eventid } } }".to_owned(),
        "{ BBR_Events(first: 0) { pageInfo { hasNextPage endCursor } } }".to_owned(),
    ];
    for query in &queries {
        let variables = json!({"last": 12, "a": ["d", "u"]});
        let from_fast = post(&fast, query, variables.clone()).await;
        let from_general = post(&general, query, variables).await;
        assert!(from_fast.get("errors").is_none(), "{query}: {from_fast}");
        assert_eq!(from_fast, from_general, "{query}");
    }

    let metrics = reqwest::get(format!("{fast}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("fordeler_graphql_fast_path_pages_total {}", queries.len());
    assert!(
        metrics.contains(&line),
        "the fast path answered every query: {metrics}"
    );
    let general_metrics = reqwest::get(format!("{general}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(general_metrics.contains("fordeler_graphql_fast_path_pages_total 0"));

    // The cursor the fast path gives pages on in the general path.
    let page = post(
        &fast,
        "{ BBR_Events(first: 4) { pageInfo { endCursor } } }",
        json!({}),
    )
    .await;
    let after = page["data"]["BBR_Events"]["pageInfo"]["endCursor"].clone();
    let next = "query($after: String) { BBR_Events(first: 2, after: $after) { edges { cursor node { eventid } } } }";
    let rest = post(&general, next, json!({"after": after})).await;
    assert_eq!(rest["data"]["BBR_Events"]["edges"][0]["node"]["eventid"], 5);
}

#[tokio::test]
async fn errors_on_the_fast_path_shape_are_the_general_errors() {
    let db = TestDb::new().await;
    let fast = server(&db, true).await;
    let general = server(&db, false).await;
    for query in [
        "{ BBR_Events(first: 5000) { nodes { eventid } } }",
        "{ BBR_Events(after: \"bm9wZQ\") { nodes { eventid } } }",
        "{ CPR_Events { nodes { eventid object_kommunekodenuvaerende } } }",
        "{ BBR_Events(where: {entityname: {in: []}, eventid: {gt: -1}}) { nodes { eventid } } }",
    ] {
        let from_fast = post(&fast, query, json!({})).await;
        let from_general = post(&general, query, json!({})).await;
        assert_eq!(from_fast, from_general, "{query}");
    }
}

#[tokio::test]
async fn entity_pages_on_the_fast_path_are_the_general_answers() {
    let db = TestDb::new().await;
    for register in ["BBR", "CVR"] {
        for file in db.generate(register, 2, 150, 4) {
            db.import(&file).await.unwrap();
        }
    }
    let fast = server(&db, true).await;
    let general = server(&db, false).await;
    let standard = "datafordelerRowId datafordelerRowVersion datafordelerOpdateringstid \
                    datafordelerRegisterImportSequenceNumber registreringFra registreringTil \
                    virkningFra virkningTil status";
    let mut asked = 0;
    for register in ["BBR", "CVR"] {
        for entity in &db.registry.get(register).unwrap().entities {
            let attributes: Vec<&str> = entity.attributes.iter().map(|a| a.name.as_str()).collect();
            let field = format!("{register}_{}", entity.name);
            let all = format!("{standard} id {}", attributes.join(" "));
            let queries = [
                format!(
                    "{{ {field}(first: 40, allRegistrations: true) {{ nodes {{ {all} }} pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"
                ),
                format!(
                    "{{ x: {field}(first: 3) {{ p: pageInfo {{ endCursor }} n: nodes {{ rid: datafordelerRowId {all} }} }} }}"
                ),
            ];
            for query in &queries {
                let from_fast = post(&fast, query, json!({})).await;
                let from_general = post(&general, query, json!({})).await;
                assert!(from_fast.get("errors").is_none(), "{query}: {from_fast}");
                assert_eq!(from_fast, from_general, "{query}");
                asked += 1;
            }
            let page = post(&fast, &queries[0], json!({})).await;
            let nodes = page["data"][&field]["nodes"].as_array().unwrap();
            assert!(!nodes.is_empty(), "{field} has rows to compare");
        }
    }
    let metrics = reqwest::get(format!("{fast}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pages = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fordeler_graphql_fast_path_pages_total "))
        .unwrap();
    assert!(
        pages.parse::<usize>().unwrap() >= asked,
        "{pages} < {asked}"
    );
}
