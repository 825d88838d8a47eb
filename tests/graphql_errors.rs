//! Errors and limits over real HTTP: every `extensions.code`, the GraphQL-over-HTTP status rules,
//! protected registers, SQL-looking input, oversized and deeply nested requests, and the
//! operational endpoints.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestDb, TestServer, bygning, upsert, uuid};
use fordeler::graphql::Limits;
use fordeler::http::HttpConfig;
use fordeler::registry::Registry;
use serde_json::{Value, json};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// A server over a database with two BBR buildings.
async fn two_buildings() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    let rows = [
        bygning("k1", &uuid(1), "0101"),
        bygning("k2", &uuid(2), "0147"),
    ];
    db.import(&db.package("BBR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

/// Asserts that the server still answers an ordinary query correctly.
async fn assert_still_serving(server: &TestServer) {
    let data = server
        .data("{ BBR_Events { nodes { eventid } } }", json!({}))
        .await;
    assert_eq!(
        data["BBR_Events"]["nodes"],
        json!([{"eventid": 1}, {"eventid": 2}])
    );
}

#[tokio::test]
async fn a_malformed_query_is_graphql_parse_failed() {
    let (_db, server) = two_buildings().await;
    let query = "{ BBR_Events(first: 1 { nodes { eventid } }";

    let (json_status, json_body) = server.post_accepting(JSON, query, json!({})).await;
    let (strict_status, strict_body) = server
        .post_accepting(GRAPHQL_RESPONSE, query, json!({}))
        .await;

    assert_eq!(json_status, 200);
    assert_eq!(code(&json_body), "GRAPHQL_PARSE_FAILED");
    assert_eq!(strict_status, 400);
    assert_eq!(code(&strict_body), "GRAPHQL_PARSE_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_field_is_graphql_validation_failed() {
    let (_db, server) = two_buildings().await;

    let unknown_node_field = server
        .error_code("{ BBR_Events { nodes { noSuchField } } }", json!({}))
        .await;
    let unknown_root_field = server
        .error_code("{ BBR_Nothing { nodes { eventid } } }", json!({}))
        .await;
    let unknown_argument = server
        .error_code("{ BBR_Events(last: 1) { nodes { eventid } } }", json!({}))
        .await;

    assert_eq!(unknown_node_field, "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(unknown_root_field, "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(unknown_argument, "GRAPHQL_VALIDATION_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_filter_operator_is_graphql_validation_failed() {
    let (_db, server) = two_buildings().await;

    let contains = server
        .error_code(
            r#"{ BBR_Bygning(where: {kommunekode: {contains: "01"}}) { nodes { id_lokalId } } }"#,
            json!({}),
        )
        .await;
    let like = server
        .error_code(
            r#"{ BBR_Events(where: {eventid: {like: 1}}) { nodes { eventid } } }"#,
            json!({}),
        )
        .await;

    assert_eq!(contains, "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(like, "GRAPHQL_VALIDATION_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn a_validation_error_is_400_under_graphql_response_json_and_200_under_json() {
    let (_db, server) = two_buildings().await;
    let query = "{ BBR_Events { nodes { noSuchField } } }";

    let (strict_status, strict_body) = server
        .post_accepting(GRAPHQL_RESPONSE, query, json!({}))
        .await;
    let (json_status, json_body) = server.post_accepting(JSON, query, json!({})).await;

    assert_eq!(strict_status, 400);
    assert_eq!(code(&strict_body), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(json_status, 200);
    assert_eq!(code(&json_body), "GRAPHQL_VALIDATION_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn a_request_refused_before_execution_answers_without_a_data_entry() {
    let (_db, server) = two_buildings().await;

    let (_, invalid) = server
        .post_accepting(JSON, "{ BBR_Events { nodes { noSuchField } } }", json!({}))
        .await;
    let (_, unparsable) = server
        .post_accepting(GRAPHQL_RESPONSE, "{ BBR_Events(", json!({}))
        .await;

    assert!(invalid.get("data").is_none(), "{invalid}");
    assert!(unparsable.get("data").is_none(), "{unparsable}");
    server.stop().await;
}

#[tokio::test]
async fn a_field_error_during_execution_answers_200_even_under_graphql_response_json() {
    let (_db, server) = two_buildings().await;

    let (status, body) = server
        .post_accepting(
            GRAPHQL_RESPONSE,
            "{ CPR_Person { nodes { personnummer } } }",
            json!({}),
        )
        .await;

    assert_eq!(code(&body), "FORBIDDEN");
    assert!(body.get("data").is_some(), "execution began: {body}");
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_date_in_a_variable_is_bad_user_input() {
    let (_db, server) = two_buildings().await;

    let timestamp = server
        .error_code(
            "query($t: DafDateTime) { BBR_Bygning(registreringstid: $t) { nodes { id_lokalId } } }",
            json!({"t": "2026-02-30T00:00:00Z"}),
        )
        .await;
    let date = server
        .error_code(
            "query($d: LocalDate) { CVR_CVREnhed(where: {stiftelsesdato: {eq: $d}}) { nodes { CVREnhedsId } } }",
            json!({"d": "2024-13-01"}),
        )
        .await;
    let date_literal = server
        .error_code(
            r#"{ CVR_CVREnhed(where: {stiftelsesdato: {gt: "01-02-2024"}}) { nodes { CVREnhedsId } } }"#,
            json!({}),
        )
        .await;
    let timestamp_in_filter = server
        .error_code(
            "query($t: DafDateTime) { BBR_Events(where: {datafordelerOpdateringstid: {gt: $t}}) { nodes { eventid } } }",
            json!({"t": "yesterday"}),
        )
        .await;

    assert_eq!(timestamp, "BAD_USER_INPUT");
    assert_eq!(date, "BAD_USER_INPUT");
    assert_eq!(date_literal, "BAD_USER_INPUT");
    assert_eq!(timestamp_in_filter, "BAD_USER_INPUT");
    server.stop().await;
}

#[tokio::test]
async fn a_negative_first_is_bad_user_input() {
    let (_db, server) = two_buildings().await;

    let events = server
        .error_code("{ BBR_Events(first: -1) { nodes { eventid } } }", json!({}))
        .await;
    let rows = server
        .error_code(
            "query($n: Int) { BBR_Bygning(first: $n) { nodes { id_lokalId } } }",
            json!({"n": -5}),
        )
        .await;

    assert_eq!(events, "BAD_USER_INPUT");
    assert_eq!(rows, "BAD_USER_INPUT");
    server.stop().await;
}

#[tokio::test]
async fn a_page_size_over_the_maximum_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;

    let huge = server
        .error_code(
            "{ BBR_Events(first: 1000000000) { nodes { eventid } } }",
            json!({}),
        )
        .await;
    let one_over = server
        .error_code(
            "{ BBR_Bygning(first: 1001) { nodes { id_lokalId } } }",
            json!({}),
        )
        .await;
    let at_the_maximum = server
        .data(
            "{ BBR_Events(first: 1000) { nodes { eventid } } }",
            json!({}),
        )
        .await;

    assert_eq!(huge, "LIMIT_EXCEEDED");
    assert_eq!(one_over, "LIMIT_EXCEEDED");
    assert_eq!(
        at_the_maximum["BBR_Events"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn an_in_list_of_more_than_1000_values_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let query =
        "query($ids: [Long!]) { BBR_Events(where: {eventid: {in: $ids}}) { nodes { eventid } } }";
    let not_in =
        "query($ids: [Long!]) { BBR_Events(where: {eventid: {nin: $ids}}) { nodes { eventid } } }";

    let over = server
        .error_code(query, json!({"ids": (1..=1001).collect::<Vec<i64>>()}))
        .await;
    let over_nin = server
        .error_code(not_in, json!({"ids": (3..=1003).collect::<Vec<i64>>()}))
        .await;
    let at_the_limit = server
        .data(query, json!({"ids": (2..=1001).collect::<Vec<i64>>()}))
        .await;

    assert_eq!(over, "LIMIT_EXCEEDED");
    assert_eq!(over_nin, "LIMIT_EXCEEDED");
    assert_eq!(at_the_limit["BBR_Events"]["nodes"], json!([{"eventid": 2}]));
    server.stop().await;
}

#[tokio::test]
async fn more_than_20_aliases_are_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let aliased = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: eventid")).collect();
        format!("{{ BBR_Events {{ nodes {{ {} }} }} }}", fields.join(" "))
    };

    let over = server.error_code(&aliased(21), json!({})).await;
    let at_the_limit = server.data(&aliased(20), json!({})).await;

    assert_eq!(over, "LIMIT_EXCEEDED");
    assert_eq!(at_the_limit["BBR_Events"]["nodes"][1]["a19"], 2);
    server.stop().await;
}

const ROOT_FIELDS: [&str; 11] = [
    "BBR_Events",
    "CVR_Events",
    "BBR_Bygning",
    "BBR_Enhed",
    "BBR_Grund",
    "BBR_Etage",
    "BBR_Opgang",
    "CVR_CVREnhed",
    "CVR_Navn",
    "CVR_Adressering",
    "CVR_Beskaeftigelse",
];

fn root_selection(n: usize) -> String {
    ROOT_FIELDS[..n]
        .iter()
        .map(|f| format!("{f}(first: 1) {{ pageInfo {{ hasNextPage }} }}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn more_than_10_root_fields_are_limit_exceeded() {
    let (_db, server) = two_buildings().await;

    let over = server
        .error_code(&format!("{{ {} }}", root_selection(11)), json!({}))
        .await;
    let at_the_limit = server
        .data(&format!("{{ {} }}", root_selection(10)), json!({}))
        .await;

    assert_eq!(over, "LIMIT_EXCEEDED");
    assert_eq!(at_the_limit.as_object().unwrap().len(), 10);
    server.stop().await;
}

#[tokio::test]
async fn root_fields_selected_through_fragments_count_against_the_root_field_limit() {
    let (_db, server) = two_buildings().await;

    let named = server
        .error_code(
            &format!(
                "{{ ...Roots }} fragment Roots on Query {{ {} }}",
                root_selection(11)
            ),
            json!({}),
        )
        .await;
    let inline = server
        .error_code(
            &format!("{{ ... on Query {{ {} }} }}", root_selection(11)),
            json!({}),
        )
        .await;

    assert_eq!(named, "LIMIT_EXCEEDED");
    assert_eq!(inline, "LIMIT_EXCEEDED");
    server.stop().await;
}

#[tokio::test]
async fn a_selection_nested_deeper_than_the_limit_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let introspection = |depth: usize| {
        format!(
            r#"{{ __type(name: "Query") {{ {}name{} }} }}"#,
            "ofType { ".repeat(depth),
            " }".repeat(depth)
        )
    };
    let nested = |depth: usize| format!("{{{}a{}}}", "a{".repeat(depth), "}".repeat(depth));

    let shallow = server.data(&introspection(3), json!({})).await;
    assert_eq!(shallow["__type"]["ofType"], Value::Null);
    for depth in [13, 20] {
        let code = server.error_code(&introspection(depth), json!({})).await;
        assert_eq!(code, "LIMIT_EXCEEDED", "ofType nested {depth} deep");
    }
    for depth in [13, 40, 100] {
        let code = server.error_code(&nested(depth), json!({})).await;
        assert_eq!(code, "LIMIT_EXCEEDED", "a selection nested {depth} deep");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_too_complex_query_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let query = |fields: usize| {
        format!(
            "{{ BBR_Events {{ nodes {{ {} }} }} }}",
            "eventid ".repeat(fields)
        )
    };

    let code = server.error_code(&query(600), json!({})).await;
    let fine = server.data(&query(50), json!({})).await;

    assert_eq!(code, "LIMIT_EXCEEDED");
    assert_eq!(fine["BBR_Events"]["nodes"][0]["eventid"], 1);
    server.stop().await;
}

/// A `where` of `levels` nested `and`s around one condition.
fn nested_and(levels: usize) -> String {
    format!(
        "{}{{eventid: {{gt: 1}}}}{}",
        "{and: [".repeat(levels),
        "]}".repeat(levels)
    )
}

#[tokio::test]
async fn and_nested_deeper_than_16_levels_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let query = |levels: usize| {
        format!(
            "{{ BBR_Events(where: {}) {{ nodes {{ eventid }} }} }}",
            nested_and(levels)
        )
    };

    let at_the_limit = server.data(&query(16), json!({})).await;
    let over = server.error_code(&query(17), json!({})).await;

    assert_eq!(at_the_limit["BBR_Events"]["nodes"], json!([{"eventid": 2}]));
    assert_eq!(over, "LIMIT_EXCEEDED");
    server.stop().await;
}

#[tokio::test]
async fn a_filter_of_more_than_200_conditions_is_limit_exceeded() {
    let (_db, server) = two_buildings().await;
    let query = |n: usize| {
        let terms: Vec<String> = (0..n)
            .map(|i| format!("{{eventid: {{eq: {i}}}}}"))
            .collect();
        format!(
            "{{ BBR_Events(where: {{or: [{}]}}) {{ nodes {{ eventid }} }} }}",
            terms.join(", ")
        )
    };

    let over = server.error_code(&query(201), json!({})).await;
    let at_the_limit = server.data(&query(200), json!({})).await;

    assert_eq!(over, "LIMIT_EXCEEDED");
    assert_eq!(
        at_the_limit["BBR_Events"]["nodes"],
        json!([{"eventid": 1}, {"eventid": 2}])
    );
    server.stop().await;
}

/// A database with BBR, CPR and CVR packages imported in turn.
async fn three_registers() -> TestDb {
    let db = TestDb::new().await;
    let person = |key: &str, cpr: &str, kommune: &str| {
        upsert(
            "Person",
            key,
            ("2026-01-01T00:00:00Z", None),
            ("1990-01-01T00:00:00Z", None),
            json!({"personnummer": cpr, "kommunekode": kommune, "fornavne": "Anne Marie"}),
        )
    };
    let adresse = upsert(
        "Adresse",
        "a1",
        ("2026-01-01T00:00:00Z", None),
        ("1990-01-01T00:00:00Z", None),
        json!({"adresseId": uuid(900), "personnummer": "0101901234", "kommunekode": "0101"}),
    );
    let civilstand = upsert(
        "Civilstand",
        "c1",
        ("2026-01-01T00:00:00Z", None),
        ("1990-01-01T00:00:00Z", None),
        json!({"civilstandId": uuid(901), "personnummer": "0101901234", "civilstand": "G"}),
    );
    let unit = upsert(
        "CVREnhed",
        "u1",
        ("2026-01-01T00:00:00Z", None),
        ("2000-01-01T00:00:00Z", None),
        json!({"CVREnhedsId": 4_000_000_001_i64}),
    );
    db.import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]))
        .await
        .unwrap();
    db.import(&db.package(
        "CPR",
        1,
        &[
            person("p1", "0101901234", "0101"),
            person("p2", "0202902345", "0147"),
            adresse,
            civilstand,
        ],
    ))
    .await
    .unwrap();
    db.import(&db.package("BBR", 2, &[bygning("k2", &uuid(2), "0101")]))
        .await
        .unwrap();
    db.import(&db.package("CPR", 2, &[person("p1", "0101901234", "0751")]))
        .await
        .unwrap();
    db.import(&db.package("CVR", 1, &[unit])).await.unwrap();
    db
}

#[tokio::test]
async fn every_cpr_entity_and_the_cpr_events_are_forbidden() {
    let db = three_registers().await;
    let server = TestServer::start(&db).await;
    let row_id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "datafordelerRowId" FROM reg_cpr.person LIMIT 1"#)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let queries = [
        "{ CPR_Person { nodes { personnummer fornavne } } }".to_owned(),
        "{ CPR_Adresse { nodes { personnummer } } }".to_owned(),
        "{ CPR_Civilstand { nodes { personnummer } } }".to_owned(),
        "{ CPR_Events { nodes { eventid object_id } } }".to_owned(),
        r#"{ CPR_Events(first: 1, where: {object_kommunekodenuvaerende: {eq: "0751"}}) { nodes { object_id } } }"#
            .to_owned(),
        format!(
            r#"{{ CPR_Person(where: {{datafordelerRowId: {{eq: "{row_id}"}}}}) {{ nodes {{ personnummer }} }} }}"#
        ),
        r#"{ CPR_Person(first: 0, where: {personnummer: {eq: "0101901234"}}) { pageInfo { hasNextPage } } }"#
            .to_owned(),
    ];

    for query in &queries {
        let (status, body) = server.post(query, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(code(&body), "FORBIDDEN", "{query}");
        assert_eq!(body["data"], Value::Null, "{query}");
        let text = body.to_string();
        assert!(
            !text.contains("0202902345") && !text.contains("Anne"),
            "{text}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn cpr_events_never_appear_among_other_registers_events() {
    let db = three_registers().await;
    let server = TestServer::start(&db).await;

    let data = server
        .data(
            r#"{
              BBR_Events(first: 1000) { nodes { eventid entityname object_id } }
              CVR_Events(first: 1000) { nodes { eventid entityname object_id } }
              named: BBR_Events(where: {entityname: {in: ["Person", "Adresse", "Civilstand"]}}) { nodes { eventid } }
              byCpr: BBR_Events(where: {object_id: {eq: "0101901234"}}) { nodes { eventid } }
            }"#,
            json!({}),
        )
        .await;

    let summary = |field: &str| -> Vec<(i64, String)> {
        data[field]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["eventid"].as_i64().unwrap(),
                    n["entityname"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        summary("BBR_Events"),
        [(1, "Bygning".to_owned()), (2, "Bygning".to_owned())]
    );
    assert_eq!(summary("CVR_Events"), [(1, "CVREnhed".to_owned())]);
    assert_eq!(data["named"]["nodes"], json!([]));
    assert_eq!(data["byCpr"]["nodes"], json!([]));
    assert_eq!(db.events("CPR").await.len(), 5, "the CPR events exist");
    assert!(!data.to_string().contains("0101901234"));
    server.stop().await;
}

/// The sample registers with `entity` of `register` protected.
fn with_protected(registry: &Registry, register: &str, entity: &str) -> Registry {
    let mut registers = registry.registers().to_vec();
    let entity = registers
        .iter_mut()
        .filter(|r| r.name == register)
        .flat_map(|r| r.entities.iter_mut())
        .find(|e| e.name == entity)
        .unwrap();
    entity.protected = true;
    Registry::new(registers)
}

#[tokio::test]
async fn a_protected_entity_of_an_open_register_never_shows_in_its_events() {
    let mut db = TestDb::new().await;
    db.registry = with_protected(&db.registry, "CVR", "Navn");
    let unit = upsert(
        "CVREnhed",
        "u1",
        ("2026-01-01T00:00:00Z", None),
        ("2000-01-01T00:00:00Z", None),
        json!({"CVREnhedsId": 4_000_000_001_i64}),
    );
    let name = |key: &str, id: i64| {
        upsert(
            "Navn",
            key,
            ("2026-01-01T00:00:00Z", None),
            ("2000-01-01T00:00:00Z", None),
            json!({"navnId": id, "CVREnhedsId": 4_000_000_001_i64, "vaerdi": "Hemmelig ApS"}),
        )
    };
    db.import(&db.package("CVR", 1, &[unit, name("n1", 1), name("n2", 2)]))
        .await
        .unwrap();
    let server = TestServer::start(&db).await;

    let open = server
        .data(
            r#"{
              all: CVR_Events(first: 1) { pageInfo { hasNextPage } nodes { eventid entityname } }
              others: CVR_Events(where: {entityname: {neq: "CVREnhed"}}) { nodes { eventid } }
              later: CVR_Events(where: {eventid: {gt: 1}}) { nodes { eventid } }
            }"#,
            json!({}),
        )
        .await;
    let mut refused = Vec::new();
    for query in [
        "{ CVR_Navn { nodes { vaerdi } } }",
        r#"{ CVR_Events(where: {entityname: {eq: "Navn"}}) { nodes { eventid } } }"#,
        r#"{ CVR_Events(where: {entityname: {in: ["CVREnhed", "Navn"]}}) { nodes { eventid } } }"#,
        r#"{ CVR_Events(where: {or: [{eventid: {gt: 0}}, {entityname: {eq: "Navn"}}]}) { nodes { eventid } } }"#,
    ] {
        let (_, body) = server.post(query, json!({})).await;
        assert!(!body.to_string().contains("Hemmelig"), "{body}");
        refused.push(code(&body).to_owned());
    }

    assert_eq!(
        open["all"],
        json!({"pageInfo": {"hasNextPage": false}, "nodes": [{"eventid": 1, "entityname": "CVREnhed"}]})
    );
    assert_eq!(open["others"]["nodes"], json!([]));
    assert_eq!(open["later"]["nodes"], json!([]));
    assert_eq!(refused, ["FORBIDDEN"; 4]);
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_json_body_is_bad_request() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body(r#"{"query": "{ BBR_Events { nodes { eventid } } }""#)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();

    assert_eq!(status, 400);
    assert_eq!(code(&body), "BAD_REQUEST");
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_unsupported_media_type() {
    let (_db, server) = two_buildings().await;
    let body = json!({"query": "{ BBR_Events { nodes { eventid } } }"}).to_string();

    let mut statuses = Vec::new();
    for content_type in [
        "text/plain",
        "application/graphql",
        "application/x-www-form-urlencoded",
    ] {
        let response = server
            .client
            .post(format!("{}/graphql", server.base))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "BAD_REQUEST");
        statuses.push(status.as_u16());
    }
    let with_charset = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(statuses, [415, 415, 415]);
    assert_eq!(with_charset.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_get_without_a_query_is_bad_request_and_a_browser_gets_graphiql() {
    let (_db, server) = two_buildings().await;
    let url = format!("{}/graphql", server.base);

    let api = server.client.get(&url).send().await.unwrap();
    let api_status = api.status();
    let api_body: Value = api.json().await.unwrap();
    let browser = server
        .client
        .get(&url)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    let browser_status = browser.status();
    let page = browser.text().await.unwrap();

    assert_eq!(api_status, 400);
    assert_eq!(code(&api_body), "BAD_REQUEST");
    assert_eq!(browser_status, 200);
    assert!(page.contains("GraphiQL"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn a_get_with_a_query_string_runs_the_query() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .get(format!("{}/graphql", server.base))
        .query(&[
            (
                "query",
                "query($n: Int) { BBR_Events(first: $n) { nodes { eventid object_id } } }",
            ),
            ("variables", r#"{"n": 1}"#),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();

    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"BBR_Events": {"nodes": [{"eventid": 1, "object_id": uuid(1)}]}}})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_get_with_variables_that_are_not_json_is_bad_request() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .get(format!("{}/graphql", server.base))
        .query(&[
            (
                "query",
                "query($n: Int) { BBR_Events(first: $n) { nodes { eventid } } }",
            ),
            ("variables", "{n: 1"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();

    assert_eq!(status, 400);
    assert_eq!(code(&body), "BAD_REQUEST");
    server.stop().await;
}

#[tokio::test]
async fn text_values_that_look_like_sql_are_treated_as_data() {
    let db = TestDb::new().await;
    let name = |key: &str, id: i64, vaerdi: &str| {
        upsert(
            "Navn",
            key,
            ("2026-01-01T00:00:00Z", None),
            ("2020-01-01T00:00:00Z", None),
            json!({"navnId": id, "CVREnhedsId": 4_000_000_001_i64, "vaerdi": vaerdi}),
        )
    };
    let rows = [
        name("n1", 1, "x' OR 1=1 --"),
        name("n2", 2, "LEGO System A/S"),
    ];
    db.import(&db.package("CVR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;
    let injections = [
        "x' OR 1=1 --",
        "'; DROP TABLE registers; --",
        "\") OR TRUE; --",
        "%' OR '1'='1",
        "\\'; SELECT pg_sleep(10); --",
    ];
    let query = "query($v: String, $l: [String!]) {
      eq: CVR_Navn(where: {vaerdi: {eq: $v}}) { nodes { navnId } }
      neq: CVR_Navn(where: {vaerdi: {neq: $v}}) { nodes { navnId } }
      in: CVR_Navn(where: {vaerdi: {in: $l}}) { nodes { navnId } }
      nin: CVR_Navn(where: {vaerdi: {nin: $l}}) { nodes { navnId } }
      startsWith: CVR_Navn(where: {vaerdi: {startsWith: $v}}) { nodes { navnId } }
      events: CVR_Events(where: {or: [{entityname: {eq: $v}}, {object_id: {in: $l}}, {eventaction: {nin: $l}, entityname: {neq: $v}, object_status: {eq: $v}}]}) { nodes { eventid } }
    }";

    for injection in injections {
        let data = server
            .data(query, json!({"v": injection, "l": [injection]}))
            .await;
        let ids = |field: &str| -> Vec<i64> {
            data[field]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["navnId"].as_i64().unwrap())
                .collect()
        };
        let stored = injection == "x' OR 1=1 --";
        let (matching, others) = if stored {
            (vec![1], vec![2])
        } else {
            (vec![], vec![1, 2])
        };
        assert_eq!(ids("eq"), matching, "eq {injection}");
        assert_eq!(ids("in"), matching, "in {injection}");
        assert_eq!(ids("startsWith"), matching, "startsWith {injection}");
        assert_eq!(ids("neq"), others, "neq {injection}");
        assert_eq!(ids("nin"), others, "nin {injection}");
        assert_eq!(data["events"]["nodes"], json!([]), "events {injection}");
    }

    let literal = server
        .data(
            r#"{ CVR_Navn(where: {vaerdi: {eq: "'; DROP TABLE registers; --"}}) { nodes { navnId } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(literal["CVR_Navn"]["nodes"], json!([]));
    assert_registers_intact(&db, &server).await;
    server.stop().await;
}

/// The registers table and the CVR data are untouched.
async fn assert_registers_intact(db: &TestDb, server: &TestServer) {
    let registers: i64 = sqlx::query_scalar("SELECT count(*) FROM registers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(registers, 3);
    let status = server
        .data("{ RegisterImportStatus { register } }", json!({}))
        .await;
    assert_eq!(
        status["RegisterImportStatus"],
        json!([{"register": "BBR"}, {"register": "CPR"}, {"register": "CVR"}])
    );
    assert_eq!(db.count_rows("CVR", "Navn").await, 2);
}

#[tokio::test]
async fn typed_values_that_look_like_sql_are_refused_as_bad_user_input() {
    let db = TestDb::new().await;
    let name = upsert(
        "Navn",
        "n1",
        ("2026-01-01T00:00:00Z", None),
        ("2020-01-01T00:00:00Z", None),
        json!({"navnId": 1, "CVREnhedsId": 4_000_000_001_i64, "vaerdi": "LEGO System A/S"}),
    );
    db.import(&db.package("CVR", 1, &[name])).await.unwrap();
    let server = TestServer::start(&db).await;
    let injection = "1; DROP TABLE registers; --";
    let cases = [
        ("Long", "CVR_Events", "eventid", "eq"),
        ("Long", "CVR_Navn", "navnId", "gt"),
        ("[Long!]", "CVR_Navn", "CVREnhedsId", "in"),
        ("UUID", "CVR_Navn", "datafordelerRowId", "eq"),
        ("[UUID!]", "CVR_Events", "object_datafordelerRowId", "nin"),
        ("LocalDate", "CVR_CVREnhed", "stiftelsesdato", "lte"),
        ("DafDateTime", "CVR_Navn", "registreringFra", "ngt"),
        (
            "DafDateTime",
            "CVR_Events",
            "datafordelerOpdateringstid",
            "neq",
        ),
        ("Boolean", "CVR_Events", "fromfailedimport", "eq"),
    ];

    for (ty, field, column, op) in cases {
        let value = if ty.starts_with('[') {
            json!([injection])
        } else {
            json!(injection)
        };
        let via_variable = server
            .error_code(
                &format!(
                    "query($x: {ty}) {{ {field}(where: {{{column}: {{{op}: $x}}}}) {{ pageInfo {{ hasNextPage }} }} }}"
                ),
                json!({ "x": value }),
            )
            .await;
        let inline = server
            .error_code(
                &format!(
                    "{{ {field}(where: {{{column}: {{{op}: {value}}}}}) {{ pageInfo {{ hasNextPage }} }} }}"
                ),
                json!({}),
            )
            .await;
        assert_eq!(
            via_variable, "BAD_USER_INPUT",
            "{field}.{column}.{op} ({ty})"
        );
        assert_eq!(inline, "BAD_USER_INPUT", "{field}.{column}.{op} inline");
    }
    let time = server
        .error_code(
            r#"{ CVR_Navn(virkningstid: "2026-01-01T00:00:00Z'; DROP TABLE registers; --") { nodes { navnId } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(time, "BAD_USER_INPUT");
    let registers: i64 = sqlx::query_scalar("SELECT count(*) FROM registers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(registers, 3);
    assert_eq!(db.count_rows("CVR", "Navn").await, 1);
    server.stop().await;
}

/// A POST body of exactly `size` bytes: a valid request padded with an unused variable.
fn padded_body(size: usize) -> String {
    let head = r#"{"query": "{ BBR_Events { nodes { eventid } } }", "variables": {"pad": ""#;
    let tail = r#""}}"#;
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused_and_the_server_keeps_serving() {
    let (_db, server) = two_buildings().await;
    let send = |body: String| {
        server
            .client
            .post(format!("{}/graphql", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let over = send(padded_body(1024 * 1024 + 1)).await.unwrap();
    let at_the_limit = send(padded_body(1024 * 1024)).await.unwrap();

    assert_eq!(over.status(), 413);
    assert_eq!(at_the_limit.status(), 200);
    let body: Value = at_the_limit.json().await.unwrap();
    assert_eq!(
        body["data"]["BBR_Events"]["nodes"],
        json!([{"eventid": 1}, {"eventid": 2}])
    );
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_in_the_apis_error_shape() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body(padded_body(1024 * 1024 + 1))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();

    assert_eq!(status, 413);
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not the API's JSON error shape: {text:?}"));
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_one_mebibyte_is_refused_too() {
    let (_db, server) = two_buildings().await;
    let body = padded_body(2 * 1024 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();

    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 413);
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_nested_5000_levels_deep_is_refused_and_the_server_keeps_serving() {
    let (_db, server) = two_buildings().await;
    let query = format!("{{{}a{}}}", "a{".repeat(5000), "}".repeat(5000));

    let (status, body) = server.post(&query, json!({})).await;

    assert_eq!(status, 200);
    assert!(
        ["LIMIT_EXCEEDED", "GRAPHQL_PARSE_FAILED"].contains(&code(&body)),
        "{body}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_nested_5000_levels_deep_is_refused_and_the_server_keeps_serving() {
    let (_db, server) = two_buildings().await;
    let query = format!(
        "{{ BBR_Events(where: {}) {{ nodes {{ eventid }} }} }}",
        nested_and(5000)
    );

    let (status, body) = server.post(&query, json!({})).await;

    assert_eq!(status, 200);
    assert!(
        ["LIMIT_EXCEEDED", "GRAPHQL_PARSE_FAILED"].contains(&code(&body)),
        "{body}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_variable_nested_deeply_is_refused_and_the_server_keeps_serving() {
    let (_db, server) = two_buildings().await;
    let query = "query($w: BBR_EventsFilterInput) { BBR_Events(where: $w) { nodes { eventid } } }";
    // Written as text: a deeply nested serde_json::Value would overflow this test's own stack.
    let body = |levels: usize| {
        format!(
            r#"{{"query": "{query}", "variables": {{"w": {}{{"eventid": {{"gt": 1}}}}{}}}}}"#,
            r#"{"and": ["#.repeat(levels),
            "]}".repeat(levels)
        )
    };
    let send = |levels: usize| {
        server
            .client
            .post(format!("{}/graphql", server.base))
            .header("content-type", "application/json")
            .body(body(levels))
            .send()
    };

    let moderate = send(40).await.unwrap();
    let moderate_status = moderate.status();
    let moderate: Value = moderate.json().await.unwrap();
    let deep = send(5000).await.unwrap();
    let deep_status = deep.status();
    let deep: Value = deep.json().await.unwrap();

    assert_eq!(moderate_status, 200);
    assert_eq!(code(&moderate), "LIMIT_EXCEEDED");
    assert!(
        (deep_status == 200 && code(&deep) == "LIMIT_EXCEEDED")
            || (deep_status == 400 && code(&deep) == "BAD_REQUEST"),
        "{deep_status} {deep}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let (_db, server) = two_buildings().await;
    let get = |path: &str| server.client.get(format!("{}{path}", server.base)).send();
    server
        .data("{ BBR_Events { nodes { eventid } } }", json!({}))
        .await;

    let health = get("/healthz").await.unwrap();
    let ready = get("/readyz").await.unwrap();
    let metrics = get("/metrics").await.unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    let line = |prefix: &str, labels: &[&str]| {
        text.lines()
            .find(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label)))
            .unwrap_or_else(|| panic!("no {prefix} {labels:?} in\n{text}"))
            .to_owned()
    };
    let requests = line(
        "fordeler_http_requests_total{",
        &[r#"route="/graphql""#, r#"status="200""#],
    );
    let rows = line(
        "fordeler_graphql_rows_returned_total{",
        &[r#"field="BBR_Events""#],
    );
    assert!(requests.ends_with(" 1"), "{requests}");
    assert!(rows.ends_with(" 2"), "{rows}");
    server.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_server_timing() {
    let (_db, server) = two_buildings().await;

    let generated = server
        .client
        .post(format!("{}/graphql", server.base))
        .json(&json!({"query": "{ BBR_Events { nodes { eventid } } }"}))
        .send()
        .await
        .unwrap();
    let given = server
        .client
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "test-request-42")
        .send()
        .await
        .unwrap();

    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(uuid::Uuid::try_parse(&header(&generated, "x-request-id")).is_ok());
    assert!(header(&generated, "server-timing").starts_with("app;dur="));
    assert_eq!(header(&given, "x-request-id"), "test-request-42");
    assert!(header(&given, "server-timing").starts_with("app;dur="));
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_share_one_metric_label() {
    let (_db, server) = two_buildings().await;

    for path in ["/no/such/path", "/another-path", "/graphql/x"] {
        let response = server
            .client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let unmatched: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("fordeler_http_requests_total{") && l.contains("status=\"404\""))
        .collect();
    assert_eq!(unmatched.len(), 1, "{text}");
    assert!(unmatched[0].contains(r#"route="unmatched""#), "{text}");
    assert!(unmatched[0].ends_with(" 3"), "{text}");
    assert!(!text.contains("no/such/path"));
    server.stop().await;
}

#[tokio::test]
async fn the_sdl_is_served_at_schema_graphql() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .get(format!("{}/graphql/schema.graphql", server.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let sdl = response.text().await.unwrap();

    assert_eq!(status, 200);
    assert!(sdl.contains("BBR_Events("), "{sdl}");
    assert!(sdl.contains("input DafSearchableStringOperationFilterInput"));
    assert!(sdl.contains("RegisterImportStatus"));
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_path_is_404_in_the_error_shape() {
    let (_db, server) = two_buildings().await;

    let response = server
        .client
        .get(format!("{}/graphql/nothing", server.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();

    assert_eq!(status, 404);
    assert_eq!(code(&body), "BAD_REQUEST");
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_the_timeout_is_stopped_with_timeout() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]))
        .await
        .unwrap();
    let config = HttpConfig {
        request_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let server = TestServer::start_with(&db, Limits::default(), config).await;
    let query = "{ BBR_Bygning { nodes { id_lokalId } } }";
    let mut lock = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE reg_bbr.bygning IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let (json_status, json_body) = server.post_accepting(JSON, query, json!({})).await;
    let (strict_status, strict_body) = server
        .post_accepting(GRAPHQL_RESPONSE, query, json!({}))
        .await;
    lock.rollback().await.unwrap();

    assert_eq!(json_status, 200);
    assert_eq!(code(&json_body), "TIMEOUT");
    assert_eq!(strict_status, 504);
    assert_eq!(code(&strict_body), "TIMEOUT");
    let data = server.data(query, json!({})).await;
    assert_eq!(
        data["BBR_Bygning"]["nodes"],
        json!([{"id_lokalId": uuid(1)}])
    );
    server.stop().await;
}

#[tokio::test]
async fn a_database_failure_is_internal_and_leaks_no_sql() {
    let (db, server) = two_buildings().await;
    sqlx::query("ALTER TABLE reg_bbr.enhed RENAME TO enhed_moved")
        .execute(&db.pool)
        .await
        .unwrap();

    let (status, body) = server
        .post("{ BBR_Enhed { nodes { id_lokalId } } }", json!({}))
        .await;

    assert_eq!(status, 200);
    assert_eq!(code(&body), "INTERNAL");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains("enhed") && !message.to_lowercase().contains("relation"),
        "{message}"
    );
    assert_still_serving(&server).await;
    server.stop().await;
}
