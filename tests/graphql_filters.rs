//! `where` over real HTTP: every operator of every field type, `and`/`or` nesting, and several
//! operators in one object, checked against expectations computed by hand from small packages.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestDb, TestServer, delete, upsert, uuid};
use fordeler::registry::Registry;
use serde_json::{Value, json};

/// The numbers of the rows `field(where: filter)` returns, ascending: `key` read as a small
/// number (a `uuid(n)` gives n, an integer its last six digits).
async fn matching(server: &TestServer, field: &str, key: &str, filter: &str) -> Vec<i64> {
    let query = format!("{{ {field}(first: 1000, where: {filter}) {{ nodes {{ {key} }} }} }}");
    let data = server.data(&query, json!({})).await;
    let mut numbers: Vec<i64> = data[field]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| small_number(&node[key]))
        .collect();
    numbers.sort_unstable();
    numbers
}

fn small_number(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap() % 1_000_000,
        Value::String(s) => s[s.len() - 12..].parse().unwrap(),
        other => panic!("not a key: {other}"),
    }
}

/// Asserts each `(filter, expected numbers)` case.
async fn assert_cases(server: &TestServer, field: &str, key: &str, cases: &[(String, Vec<i64>)]) {
    for (filter, expected) in cases {
        assert_eq!(
            &matching(server, field, key, filter).await,
            expected,
            "{field}(where: {filter})"
        );
    }
}

fn cases(list: &[(&str, &[i64])]) -> Vec<(String, Vec<i64>)> {
    list.iter()
        .map(|(filter, expected)| (filter.to_string(), expected.to_vec()))
        .collect()
}

/// A building `uuid(n)`, registered from `registrering_fra`, valid since 2020.
fn building(
    key: &str,
    n: u32,
    kommunekode: &str,
    opfoerelsesaar: Option<i64>,
    virkningsaktoer: Option<&str>,
    registrering_fra: &str,
    status: Option<&str>,
) -> Value {
    let husnummer = (n % 2 == 1).then(|| uuid(100 + n));
    let mut row = upsert(
        "Bygning",
        key,
        (registrering_fra, None),
        ("2020-01-01T00:00:00Z", None),
        json!({"id_lokalId": uuid(n), "kommunekode": kommunekode,
            "byg026Opfoerelsesaar": opfoerelsesaar, "virkningsaktoer": virkningsaktoer,
            "husnummer": husnummer}),
    );
    row["status"] = json!(status);
    row
}

/// Five buildings (package 1), then building 2 changed in package 2:
///
/// | n | kommunekode | opførelsesår | virkningsaktør   | registreringFra | status    | husnummer |
/// |---|-------------|--------------|------------------|-----------------|-----------|-----------|
/// | 1 | 0101        | 1850         | Konvertering2017 | 2026-01-01      | gældende  | uuid(101) |
/// | 2 | 0147        | 1900         | Kommune          | 2026-01-02      | gældende  | null      |
/// | 3 | 0151        | 1950         | BBR              | 2026-01-03      | historisk | uuid(103) |
/// | 4 | 0101        | 2000         | Konvertering2018 | 2026-01-04      | null      | null      |
/// | 5 | 0751        | null         | null             | 2026-01-05      | gældende  | uuid(105) |
async fn five_buildings() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    let rows = [
        building(
            "b1",
            1,
            "0101",
            Some(1850),
            Some("Konvertering2017"),
            "2026-01-01T00:00:00Z",
            Some("gældende"),
        ),
        building(
            "b2",
            2,
            "0147",
            Some(1900),
            Some("Kommune"),
            "2026-01-02T00:00:00Z",
            Some("gældende"),
        ),
        building(
            "b3",
            3,
            "0151",
            Some(1950),
            Some("BBR"),
            "2026-01-03T00:00:00Z",
            Some("historisk"),
        ),
        building(
            "b4",
            4,
            "0101",
            Some(2000),
            Some("Konvertering2018"),
            "2026-01-04T00:00:00Z",
            None,
        ),
        building(
            "b5",
            5,
            "0751",
            None,
            None,
            "2026-01-05T00:00:00Z",
            Some("gældende"),
        ),
    ];
    db.import(&db.package("BBR", 1, &rows)).await.unwrap();
    let mut changed = rows[1].clone();
    changed["attributes"]["byg007Bygningsnummer"] = json!(7);
    db.import(&db.package("BBR", 2, &[changed])).await.unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

#[tokio::test]
async fn text_operators_select_exactly_the_matching_rows() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        (r#"{kommunekode: {eq: "0101"}}"#, &[1, 4]),
        (r#"{kommunekode: {eq: "101"}}"#, &[]),
        (r#"{kommunekode: {in: ["0147", "0751", "9999"]}}"#, &[2, 5]),
        (r#"{kommunekode: {in: []}}"#, &[]),
        (r#"{kommunekode: {neq: "0101"}}"#, &[2, 3, 5]),
        (r#"{kommunekode: {nin: ["0101", "0151"]}}"#, &[2, 5]),
        (r#"{status: {eq: "gældende"}}"#, &[1, 2, 5]),
        (r#"{status: {eq: "GÆLDENDE"}}"#, &[]),
        (r#"{status: {neq: "gældende"}}"#, &[3]),
        (r#"{status: {nin: []}}"#, &[1, 2, 3, 5]),
        (r#"{status: {eq: null}}"#, &[4]),
        (r#"{status: {neq: null}}"#, &[1, 2, 3, 5]),
        (r#"{virkningsaktoer: {eq: "Kommune"}}"#, &[2]),
        (r#"{virkningsaktoer: {in: ["BBR", "Kommune"]}}"#, &[2, 3]),
        (r#"{virkningsaktoer: {eq: null}}"#, &[5]),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn starts_with_on_a_searchable_field_matches_a_case_sensitive_literal_prefix() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        (
            r#"{virkningsaktoer: {startsWith: "Konvertering"}}"#,
            &[1, 4],
        ),
        (
            r#"{virkningsaktoer: {startsWith: "Konvertering2017"}}"#,
            &[1],
        ),
        (r#"{virkningsaktoer: {startsWith: "konvertering"}}"#, &[]),
        (
            r#"{virkningsaktoer: {startsWith: "Konvertering201_"}}"#,
            &[],
        ),
        (r#"{virkningsaktoer: {startsWith: "%"}}"#, &[]),
        (r#"{virkningsaktoer: {startsWith: ""}}"#, &[1, 2, 3, 4]),
        (
            r#"{virkningsaktoer: {startsWith: "Konvertering", neq: "Konvertering2018"}}"#,
            &[1],
        ),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn starts_with_on_a_field_that_is_not_searchable_is_a_validation_error() {
    let (_db, server) = five_buildings().await;

    let code = server
        .error_code(
            r#"{ BBR_Bygning(where: {kommunekode: {startsWith: "01"}}) { nodes { id_lokalId } } }"#,
            json!({}),
        )
        .await;

    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn filtering_on_a_field_that_is_not_filterable_is_a_validation_error() {
    let (_db, server) = five_buildings().await;

    let code = server
        .error_code(
            r#"{ BBR_Bygning(where: {byg007Bygningsnummer: {eq: 7}}) { nodes { id_lokalId } } }"#,
            json!({}),
        )
        .await;

    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED");
    server.stop().await;
}

#[tokio::test]
async fn integer_operators_select_the_hand_computed_rows() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        ("{byg026Opfoerelsesaar: {eq: 1900}}", &[2]),
        ("{byg026Opfoerelsesaar: {in: [1850, 2000, 1234]}}", &[1, 4]),
        ("{byg026Opfoerelsesaar: {gt: 1900}}", &[3, 4]),
        ("{byg026Opfoerelsesaar: {gte: 1900}}", &[2, 3, 4]),
        ("{byg026Opfoerelsesaar: {lt: 1950}}", &[1, 2]),
        ("{byg026Opfoerelsesaar: {lte: 1950}}", &[1, 2, 3]),
        ("{byg026Opfoerelsesaar: {ngt: 1900}}", &[1, 2]),
        ("{byg026Opfoerelsesaar: {ngte: 1900}}", &[1]),
        ("{byg026Opfoerelsesaar: {nlt: 1900}}", &[2, 3, 4]),
        ("{byg026Opfoerelsesaar: {nlte: 1900}}", &[3, 4]),
        ("{byg026Opfoerelsesaar: {neq: 1900}}", &[1, 3, 4]),
        ("{byg026Opfoerelsesaar: {nin: [1850, 2000]}}", &[2, 3]),
        ("{byg026Opfoerelsesaar: {eq: null}}", &[5]),
        ("{byg026Opfoerelsesaar: {neq: null}}", &[1, 2, 3, 4]),
        (r#"{byg026Opfoerelsesaar: {eq: "1950"}}"#, &[3]),
        ("{datafordelerRowVersion: {gt: 1}}", &[2]),
        (
            "{datafordelerRowVersion: {in: [1, 9999999999]}}",
            &[1, 3, 4, 5],
        ),
        (
            "{datafordelerRowVersion: {lt: 9999999999}}",
            &[1, 2, 3, 4, 5],
        ),
        ("{datafordelerRegisterImportSequenceNumber: {eq: 2}}", &[2]),
        (
            "{datafordelerRegisterImportSequenceNumber: {lt: 2}}",
            &[1, 3, 4, 5],
        ),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn several_operators_in_one_object_must_all_hold() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        ("{byg026Opfoerelsesaar: {gte: 1900, lt: 2000}}", &[2, 3]),
        (
            "{byg026Opfoerelsesaar: {gt: 1850, nin: [1950], neq: null}}",
            &[2, 4],
        ),
        ("{byg026Opfoerelsesaar: {gt: 1950, lt: 1950}}", &[]),
        (
            r#"{kommunekode: {in: ["0101", "0147"], neq: "0147"}, byg026Opfoerelsesaar: {lt: 2000}}"#,
            &[1],
        ),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn and_and_or_nest_several_levels_deep() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        (
            r#"{or: [{kommunekode: {eq: "0147"}}, {and: [{kommunekode: {eq: "0101"}}, {byg026Opfoerelsesaar: {gt: 1900}}]}]}"#,
            &[2, 4],
        ),
        (
            r#"{and: [{or: [{and: [{kommunekode: {eq: "0101"}}, {byg026Opfoerelsesaar: {lt: 1900}}]}, {status: {eq: null}}, {kommunekode: {eq: "0751"}}]}, {or: [{virkningsaktoer: {startsWith: "Konv"}}, {virkningsaktoer: {eq: null}}]}]}"#,
            &[1, 4, 5],
        ),
        (
            r#"{kommunekode: {eq: "0101"}, and: [{byg026Opfoerelsesaar: {lt: 1900}}]}"#,
            &[1],
        ),
        (
            r#"{kommunekode: {eq: "0101"}, or: [{byg026Opfoerelsesaar: {eq: 2000}}, {status: {eq: "historisk"}}]}"#,
            &[4],
        ),
        (
            r#"{or: [{or: [{or: [{or: [{byg026Opfoerelsesaar: {eq: 1850}}]}]}]}, {and: [{and: [{and: [{byg026Opfoerelsesaar: {eq: 1950}}]}]}]}]}"#,
            &[1, 3],
        ),
        ("{or: []}", &[]),
        ("{and: []}", &[1, 2, 3, 4, 5]),
        ("{or: [{and: []}]}", &[1, 2, 3, 4, 5]),
        ("{}", &[1, 2, 3, 4, 5]),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn timestamp_operators_on_registrering_fra_select_the_hand_computed_rows() {
    let (_db, server) = five_buildings().await;

    let expected = cases(&[
        (r#"{registreringFra: {eq: "2026-01-03T00:00:00Z"}}"#, &[3]),
        (
            r#"{registreringFra: {eq: "2026-01-03T01:00:00+01:00"}}"#,
            &[3],
        ),
        (
            r#"{registreringFra: {eq: "2026-01-03T00:00:00.000001Z"}}"#,
            &[],
        ),
        (
            r#"{registreringFra: {in: ["2026-01-01T00:00:00Z", "2026-01-05T00:00:00.000000Z"]}}"#,
            &[1, 5],
        ),
        (
            r#"{registreringFra: {gt: "2026-01-03T00:00:00Z"}}"#,
            &[4, 5],
        ),
        (
            r#"{registreringFra: {gte: "2026-01-03T00:00:00Z"}}"#,
            &[3, 4, 5],
        ),
        (
            r#"{registreringFra: {lt: "2026-01-03T00:00:00Z"}}"#,
            &[1, 2],
        ),
        (
            r#"{registreringFra: {lte: "2026-01-03T00:00:00Z"}}"#,
            &[1, 2, 3],
        ),
        (
            r#"{registreringFra: {ngt: "2026-01-03T00:00:00Z"}}"#,
            &[1, 2, 3],
        ),
        (
            r#"{registreringFra: {ngte: "2026-01-03T00:00:00Z"}}"#,
            &[1, 2],
        ),
        (
            r#"{registreringFra: {nlt: "2026-01-03T00:00:00Z"}}"#,
            &[3, 4, 5],
        ),
        (
            r#"{registreringFra: {nlte: "2026-01-03T00:00:00Z"}}"#,
            &[4, 5],
        ),
        (
            r#"{registreringFra: {neq: "2026-01-01T00:00:00Z"}}"#,
            &[2, 3, 4, 5],
        ),
        (
            r#"{registreringFra: {nin: ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]}}"#,
            &[3, 4, 5],
        ),
        (
            r#"{registreringFra: {gt: "2026-01-01T12:00:00Z", lt: "2026-01-04T12:00:00Z"}}"#,
            &[2, 3, 4],
        ),
        ("{registreringTil: {eq: null}}", &[1, 2, 3, 4, 5]),
        ("{registreringTil: {neq: null}}", &[]),
        (
            r#"{virkningFra: {eq: "2020-01-01T00:00:00Z"}}"#,
            &[1, 2, 3, 4, 5],
        ),
    ]);
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn datafordeler_opdateringstid_tells_the_rows_a_later_package_changed() {
    let (_db, server) = five_buildings().await;
    let data = server
        .data(
            "{ BBR_Events { nodes { eventid datafordelerOpdateringstid } } }",
            json!({}),
        )
        .await;
    let nodes = data["BBR_Events"]["nodes"].as_array().unwrap();
    let first = nodes[0]["datafordelerOpdateringstid"].as_str().unwrap();
    let second = nodes[5]["datafordelerOpdateringstid"].as_str().unwrap();
    assert_eq!(nodes.len(), 6, "five inserts, then one update");
    assert!(first < second, "{first} then {second}");

    let expected = vec![
        (
            format!(r#"{{datafordelerOpdateringstid: {{eq: "{second}"}}}}"#),
            vec![2],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{eq: "{first}"}}}}"#),
            vec![1, 3, 4, 5],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{gt: "{first}"}}}}"#),
            vec![2],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{nlt: "{second}"}}}}"#),
            vec![2],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{lte: "{first}"}}}}"#),
            vec![1, 3, 4, 5],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{in: ["{first}", "{second}"]}}}}"#),
            vec![1, 2, 3, 4, 5],
        ),
    ];
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn uuid_operators_on_row_ids_and_object_ids_select_the_matching_rows() {
    let (_db, server) = five_buildings().await;
    let data = server
        .data(
            "{ BBR_Bygning { nodes { id_lokalId datafordelerRowId } } }",
            json!({}),
        )
        .await;
    let row_id = |n: i64| {
        data["BBR_Bygning"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|node| small_number(&node["id_lokalId"]) == n)
            .map(|node| node["datafordelerRowId"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (one, three) = (row_id(1), row_id(3));
    let simple_two = uuid(2).replace('-', "");
    let upper_four = uuid(4).to_uppercase();

    let expected = vec![
        (
            format!(r#"{{datafordelerRowId: {{eq: "{one}"}}}}"#),
            vec![1],
        ),
        (
            format!(r#"{{datafordelerRowId: {{in: ["{one}", "{three}"]}}}}"#),
            vec![1, 3],
        ),
        (
            format!(r#"{{datafordelerRowId: {{neq: "{one}"}}}}"#),
            vec![2, 3, 4, 5],
        ),
        (
            format!(r#"{{datafordelerRowId: {{nin: ["{one}", "{three}"]}}}}"#),
            vec![2, 4, 5],
        ),
        (format!(r#"{{id_lokalId: {{eq: "{}"}}}}"#, uuid(2)), vec![2]),
        (
            format!(r#"{{id_lokalId: {{eq: "{simple_two}"}}}}"#),
            vec![2],
        ),
        (
            format!(r#"{{id_lokalId: {{in: ["{upper_four}", "{}"]}}}}"#, uuid(9)),
            vec![4],
        ),
        (
            format!(r#"{{id_lokalId: {{neq: "{}"}}}}"#, uuid(2)),
            vec![1, 3, 4, 5],
        ),
        (
            format!(r#"{{id_lokalId: {{nin: ["{}", "{}"]}}}}"#, uuid(1), uuid(5)),
            vec![2, 3, 4],
        ),
        ("{husnummer: {eq: null}}".to_owned(), vec![2, 4]),
        ("{husnummer: {neq: null}}".to_owned(), vec![1, 3, 5]),
        (
            format!(r#"{{husnummer: {{eq: "{}"}}}}"#, uuid(103)),
            vec![3],
        ),
        (
            format!(r#"{{husnummer: {{neq: "{}"}}}}"#, uuid(103)),
            vec![1, 5],
        ),
    ];
    assert_cases(&server, "BBR_Bygning", "id_lokalId", &expected).await;
    server.stop().await;
}

/// Four CVR units:
///
/// | n | CVREnhedsId | stiftelsesdato | reklamebeskyttet |
/// |---|-------------|----------------|------------------|
/// | 1 | 4000000001  | 1990-05-01     | true             |
/// | 2 | 4000000002  | 2000-01-01     | false            |
/// | 3 | 4000000003  | 2010-12-31     | null             |
/// | 4 | 4000000004  | null           | true             |
async fn four_cvr_units() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    let unit = |n: i64, founded: Option<&str>, protected: Option<bool>| {
        upsert(
            "CVREnhed",
            &format!("c{n}"),
            ("2026-01-01T00:00:00Z", None),
            ("2000-01-01T00:00:00Z", None),
            json!({"CVREnhedsId": 4_000_000_000_i64 + n, "stiftelsesdato": founded,
                "reklamebeskyttet": protected}),
        )
    };
    let rows = [
        unit(1, Some("1990-05-01"), Some(true)),
        unit(2, Some("2000-01-01"), Some(false)),
        unit(3, Some("2010-12-31"), None),
        unit(4, None, Some(true)),
    ];
    db.import(&db.package("CVR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

#[tokio::test]
async fn date_operators_select_the_hand_computed_rows() {
    let (_db, server) = four_cvr_units().await;

    let expected = cases(&[
        (r#"{stiftelsesdato: {eq: "2000-01-01"}}"#, &[2]),
        (
            r#"{stiftelsesdato: {in: ["1990-05-01", "2010-12-31"]}}"#,
            &[1, 3],
        ),
        (r#"{stiftelsesdato: {gt: "2000-01-01"}}"#, &[3]),
        (r#"{stiftelsesdato: {gte: "2000-01-01"}}"#, &[2, 3]),
        (r#"{stiftelsesdato: {lt: "2000-01-01"}}"#, &[1]),
        (r#"{stiftelsesdato: {lte: "2000-01-01"}}"#, &[1, 2]),
        (r#"{stiftelsesdato: {ngt: "2000-01-01"}}"#, &[1, 2]),
        (r#"{stiftelsesdato: {ngte: "2000-01-01"}}"#, &[1]),
        (r#"{stiftelsesdato: {nlt: "2000-01-01"}}"#, &[2, 3]),
        (r#"{stiftelsesdato: {nlte: "2000-01-01"}}"#, &[3]),
        (r#"{stiftelsesdato: {neq: "2000-01-01"}}"#, &[1, 3]),
        (
            r#"{stiftelsesdato: {nin: ["2000-01-01", "1990-05-01"]}}"#,
            &[3],
        ),
        ("{stiftelsesdato: {eq: null}}", &[4]),
        ("{stiftelsesdato: {neq: null}}", &[1, 2, 3]),
        (
            r#"{stiftelsesdato: {gt: "1990-05-01", lt: "2010-12-31"}}"#,
            &[2],
        ),
    ]);
    assert_cases(&server, "CVR_CVREnhed", "CVREnhedsId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn boolean_operators_select_the_hand_computed_rows() {
    let (_db, server) = four_cvr_units().await;

    let expected = cases(&[
        ("{reklamebeskyttet: {eq: true}}", &[1, 4]),
        ("{reklamebeskyttet: {eq: false}}", &[2]),
        ("{reklamebeskyttet: {neq: true}}", &[2]),
        ("{reklamebeskyttet: {neq: false}}", &[1, 4]),
        ("{reklamebeskyttet: {eq: null}}", &[3]),
        ("{reklamebeskyttet: {neq: null}}", &[1, 2, 4]),
    ]);
    assert_cases(&server, "CVR_CVREnhed", "CVREnhedsId", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn long_operators_compare_values_beyond_32_bits() {
    let (_db, server) = four_cvr_units().await;

    let expected = cases(&[
        ("{CVREnhedsId: {eq: 4000000002}}", &[2]),
        ("{CVREnhedsId: {gt: 4000000002}}", &[3, 4]),
        ("{CVREnhedsId: {nlt: 4000000003}}", &[3, 4]),
        ("{CVREnhedsId: {in: [4000000001, 4000000004, 1]}}", &[1, 4]),
        ("{CVREnhedsId: {nin: [4000000001, 4000000004]}}", &[2, 3]),
        ("{CVREnhedsId: {lte: 2147483647}}", &[]),
    ]);
    assert_cases(&server, "CVR_CVREnhed", "CVREnhedsId", &expected).await;
    server.stop().await;
}

/// The sample registers with one more attribute filterable (registers are data: a definition
/// change needs no code).
fn with_filterable(registry: &Registry, register: &str, entity: &str, attribute: &str) -> Registry {
    let mut registers = registry.registers().to_vec();
    let attribute = registers
        .iter_mut()
        .filter(|r| r.name == register)
        .flat_map(|r| r.entities.iter_mut())
        .filter(|e| e.name == entity)
        .flat_map(|e| e.attributes.iter_mut())
        .find(|a| a.name == attribute)
        .unwrap();
    attribute.filterable = true;
    Registry::new(registers)
}

#[tokio::test]
async fn decimal_operators_compare_exact_values() {
    let mut db = TestDb::new().await;
    db.registry = with_filterable(&db.registry, "CVR", "Beskaeftigelse", "antalAarsvaerk");
    let employment = |n: i64, aarsvaerk: Value| {
        upsert(
            "Beskaeftigelse",
            &format!("e{n}"),
            ("2026-01-01T00:00:00Z", None),
            ("2025-01-01T00:00:00Z", None),
            json!({"beskaeftigelseId": n, "CVREnhedsId": 4_000_000_001_i64,
                "antalAarsvaerk": aarsvaerk}),
        )
    };
    let rows = [
        employment(1, json!(0.5)),
        employment(2, json!("12.50")),
        employment(3, json!(100)),
        employment(4, Value::Null),
        employment(5, json!("1234567890.123456789")),
    ];
    db.import(&db.package("CVR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;

    let expected = cases(&[
        ("{antalAarsvaerk: {eq: 12.5}}", &[2]),
        (r#"{antalAarsvaerk: {eq: "12.500"}}"#, &[2]),
        ("{antalAarsvaerk: {in: [0.5, 100]}}", &[1, 3]),
        ("{antalAarsvaerk: {gt: 12.5}}", &[3, 5]),
        ("{antalAarsvaerk: {gte: 12.5}}", &[2, 3, 5]),
        ("{antalAarsvaerk: {lt: 12.5}}", &[1]),
        ("{antalAarsvaerk: {lte: 12.5}}", &[1, 2]),
        ("{antalAarsvaerk: {ngt: 12.5}}", &[1, 2]),
        ("{antalAarsvaerk: {ngte: 12.5}}", &[1]),
        ("{antalAarsvaerk: {nlt: 12.5}}", &[2, 3, 5]),
        ("{antalAarsvaerk: {nlte: 12.5}}", &[3, 5]),
        ("{antalAarsvaerk: {neq: 12.5}}", &[1, 3, 5]),
        ("{antalAarsvaerk: {nin: [0.5, 12.5]}}", &[3, 5]),
        ("{antalAarsvaerk: {eq: null}}", &[4]),
        ("{antalAarsvaerk: {neq: null}}", &[1, 2, 3, 5]),
        (r#"{antalAarsvaerk: {gt: "1234567890.123456788"}}"#, &[5]),
        (r#"{antalAarsvaerk: {eq: "1234567890.123456789"}}"#, &[5]),
        (
            r#"{antalAarsvaerk: {lt: "1234567890.12345679"}}"#,
            &[1, 2, 3, 5],
        ),
    ]);
    assert_cases(&server, "CVR_Beskaeftigelse", "beskaeftigelseId", &expected).await;
    let data = server
        .data(
            "{ CVR_Beskaeftigelse(where: {antalAarsvaerk: {neq: null}}) { nodes { beskaeftigelseId antalAarsvaerk } } }",
            json!({}),
        )
        .await;
    let mut values: Vec<(i64, String)> = data["CVR_Beskaeftigelse"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["beskaeftigelseId"].as_i64().unwrap(),
                n["antalAarsvaerk"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    values.sort();
    // Rendered as stored: the package's "12.50" keeps its scale.
    assert_eq!(
        values,
        [
            (1, "0.5"),
            (2, "12.50"),
            (3, "100"),
            (5, "1234567890.123456789")
        ]
        .map(|(n, v)| (n, v.to_owned()))
    );
    server.stop().await;
}

/// Events 1-8 of three BBR packages:
///
/// | eventid | action | entity   | object | package | object_registreringfra | registreringtil |
/// |---------|--------|----------|--------|---------|------------------------|-----------------|
/// | 1       | i      | Bygning  | 1      | 1       | 2026-01-01             |                 |
/// | 2       | i      | Bygning  | 2      | 1       | 2026-01-02             |                 |
/// | 3       | i      | Bygning  | 3      | 1       | 2026-01-03             |                 |
/// | 4       | u      | Bygning  | 2      | 2       | 2026-01-02             | 2026-02-01      |
/// | 5       | d      | Bygning  | 3      | 2       | 2026-01-03             |                 |
/// | 6       | i      | Bygning  | 4      | 2       | 2026-01-04             |                 |
/// | 7       | u      | Bygning  | 1      | 3       | 2026-01-01             |                 |
/// | 8       | i      | Enhed    | 11     | 3       | 2026-01-10             |                 |
async fn eight_events() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    let building = |n: u32, from: &str, aar: i64| {
        upsert(
            "Bygning",
            &format!("b{n}"),
            (from, None),
            ("2020-01-01T00:00:00Z", None),
            json!({"id_lokalId": uuid(n), "kommunekode": "0101", "byg026Opfoerelsesaar": aar}),
        )
    };
    let first = [
        building(1, "2026-01-01T00:00:00Z", 1900),
        building(2, "2026-01-02T00:00:00Z", 1900),
        building(3, "2026-01-03T00:00:00Z", 1900),
    ];
    db.import(&db.package("BBR", 1, &first)).await.unwrap();
    let mut closed = building(2, "2026-01-02T00:00:00Z", 1900);
    closed["registreringTil"] = json!("2026-02-01T00:00:00Z");
    let second = [
        closed,
        delete("Bygning", "b3"),
        building(4, "2026-01-04T00:00:00Z", 1900),
    ];
    db.import(&db.package("BBR", 2, &second)).await.unwrap();
    let unit = upsert(
        "Enhed",
        "e11",
        ("2026-01-10T00:00:00Z", None),
        ("2020-01-01T00:00:00Z", None),
        json!({"id_lokalId": uuid(11), "kommunekode": "0101"}),
    );
    let third = [unit, building(1, "2026-01-01T00:00:00Z", 1901)];
    db.import(&db.package("BBR", 3, &third)).await.unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

#[tokio::test]
async fn the_events_are_the_hand_computed_ones() {
    let (_db, server) = eight_events().await;

    let data = server
        .data(
            "{ BBR_Events { nodes { eventid eventaction entityname object_id datafordelerRegisterImportSequenceNumber } } }",
            json!({}),
        )
        .await;

    let seen: Vec<(i64, String, String, i64, i64)> = data["BBR_Events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["eventid"].as_i64().unwrap(),
                n["eventaction"].as_str().unwrap().to_owned(),
                n["entityname"].as_str().unwrap().to_owned(),
                small_number(&n["object_id"]),
                n["datafordelerRegisterImportSequenceNumber"]
                    .as_i64()
                    .unwrap(),
            )
        })
        .collect();
    let expected = [
        (1, "i", "Bygning", 1, 1),
        (2, "i", "Bygning", 2, 1),
        (3, "i", "Bygning", 3, 1),
        (4, "u", "Bygning", 2, 2),
        (5, "d", "Bygning", 3, 2),
        (6, "i", "Bygning", 4, 2),
        (7, "u", "Bygning", 1, 3),
        (8, "i", "Enhed", 11, 3),
    ]
    .map(|(id, a, e, o, s)| (id, a.to_owned(), e.to_owned(), o, s));
    assert_eq!(seen, expected);
    server.stop().await;
}

#[tokio::test]
async fn event_long_text_and_boolean_operators_select_the_hand_computed_events() {
    let (_db, server) = eight_events().await;

    let expected = cases(&[
        ("{eventid: {eq: 4}}", &[4]),
        ("{eventid: {in: [1, 3, 99]}}", &[1, 3]),
        ("{eventid: {gt: 6}}", &[7, 8]),
        ("{eventid: {gte: 6}}", &[6, 7, 8]),
        ("{eventid: {lt: 3}}", &[1, 2]),
        ("{eventid: {lte: 3}}", &[1, 2, 3]),
        ("{eventid: {ngt: 2}}", &[1, 2]),
        ("{eventid: {ngte: 2}}", &[1]),
        ("{eventid: {nlt: 7}}", &[7, 8]),
        ("{eventid: {nlte: 7}}", &[8]),
        ("{eventid: {neq: 1}}", &[2, 3, 4, 5, 6, 7, 8]),
        ("{eventid: {nin: [1, 2, 3]}}", &[4, 5, 6, 7, 8]),
        ("{eventid: {gt: 2, lt: 5}}", &[3, 4]),
        ("{eventid: {eq: null}}", &[]),
        ("{eventid: {neq: null}}", &[1, 2, 3, 4, 5, 6, 7, 8]),
        (r#"{eventaction: {in: ["u", "d"]}}"#, &[4, 5, 7]),
        (r#"{eventaction: {nin: ["i"]}}"#, &[4, 5, 7]),
        (r#"{eventaction: {neq: "i"}}"#, &[4, 5, 7]),
        (r#"{entityname: {eq: "Enhed"}}"#, &[8]),
        (r#"{entityname: {neq: "Bygning"}}"#, &[8]),
        (r#"{entityname: {eq: "bygning"}}"#, &[]),
        (
            r#"{entityname: {eq: "Bygning"}, eventaction: {in: ["i", "u"]}}"#,
            &[1, 2, 3, 4, 6, 7],
        ),
        (
            r#"{object_id: {eq: "00000000-0000-4000-8000-000000000001"}}"#,
            &[1, 7],
        ),
        (
            "{datafordelerRegisterImportSequenceNumber: {eq: 2}}",
            &[4, 5, 6],
        ),
        (
            "{datafordelerRegisterImportSequenceNumber: {gte: 2}}",
            &[4, 5, 6, 7, 8],
        ),
        ("{object_datafordelerRowVersion: {eq: 2}}", &[4, 7]),
        ("{object_datafordelerRowVersion: {gt: 1}}", &[4, 7]),
        ("{fromfailedimport: {eq: false}}", &[1, 2, 3, 4, 5, 6, 7, 8]),
        ("{fromfailedimport: {eq: true}}", &[]),
        ("{fromfailedimport: {neq: true}}", &[1, 2, 3, 4, 5, 6, 7, 8]),
        ("{fromfailedimport: {neq: false}}", &[]),
        ("{fromfailedimport: {eq: null}}", &[]),
        (
            r#"{or: [{eventaction: {eq: "d"}}, {and: [{entityname: {eq: "Bygning"}}, {or: [{eventid: {eq: 1}}, {eventid: {gt: 6}}]}]}]}"#,
            &[1, 5, 7],
        ),
    ]);
    assert_cases(&server, "BBR_Events", "eventid", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn event_timestamp_operators_select_the_hand_computed_events() {
    let (_db, server) = eight_events().await;
    let data = server
        .data(
            "{ BBR_Events { nodes { datafordelerOpdateringstid } } }",
            json!({}),
        )
        .await;
    let written = |eventid: usize| {
        data["BBR_Events"]["nodes"][eventid - 1]["datafordelerOpdateringstid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (t1, t2, t3) = (written(1), written(4), written(8));
    assert!(t1 < t2 && t2 < t3, "{t1} < {t2} < {t3}");
    let at = |op: &str, t: &str| format!(r#"{{datafordelerOpdateringstid: {{{op}: "{t}"}}}}"#);
    let reg = |op: &str, day: &str| {
        format!(r#"{{object_registreringfra: {{{op}: "2026-01-{day}T00:00:00Z"}}}}"#)
    };

    let expected = vec![
        (at("eq", &t2), vec![4, 5, 6]),
        (at("gt", &t1), vec![4, 5, 6, 7, 8]),
        (at("gte", &t2), vec![4, 5, 6, 7, 8]),
        (at("lt", &t3), vec![1, 2, 3, 4, 5, 6]),
        (at("lte", &t2), vec![1, 2, 3, 4, 5, 6]),
        (at("ngt", &t1), vec![1, 2, 3]),
        (at("ngte", &t2), vec![1, 2, 3]),
        (at("nlt", &t3), vec![7, 8]),
        (at("nlte", &t2), vec![7, 8]),
        (at("neq", &t2), vec![1, 2, 3, 7, 8]),
        (
            format!(r#"{{datafordelerOpdateringstid: {{in: ["{t1}", "{t3}"]}}}}"#),
            vec![1, 2, 3, 7, 8],
        ),
        (
            format!(r#"{{datafordelerOpdateringstid: {{nin: ["{t1}", "{t3}"]}}}}"#),
            vec![4, 5, 6],
        ),
        (reg("eq", "01"), vec![1, 7]),
        (reg("gt", "03"), vec![6, 8]),
        (reg("gte", "03"), vec![3, 5, 6, 8]),
        (reg("lt", "02"), vec![1, 7]),
        (reg("lte", "02"), vec![1, 2, 4, 7]),
        (reg("ngt", "02"), vec![1, 2, 4, 7]),
        (reg("ngte", "02"), vec![1, 7]),
        (reg("nlt", "04"), vec![6, 8]),
        (reg("nlte", "04"), vec![8]),
        (reg("neq", "01"), vec![2, 3, 4, 5, 6, 8]),
        (
            r#"{object_registreringfra: {in: ["2026-01-03T00:00:00Z", "2026-01-10T00:00:00Z"]}}"#
                .to_owned(),
            vec![3, 5, 8],
        ),
        (
            r#"{object_registreringfra: {nin: ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]}}"#
                .to_owned(),
            vec![3, 5, 6, 8],
        ),
        (
            "{object_registreringtil: {eq: null}}".to_owned(),
            vec![1, 2, 3, 5, 6, 7, 8],
        ),
        ("{object_registreringtil: {neq: null}}".to_owned(), vec![4]),
        (
            r#"{object_registreringtil: {eq: "2026-02-01T01:00:00+01:00"}}"#.to_owned(),
            vec![4],
        ),
    ];
    assert_cases(&server, "BBR_Events", "eventid", &expected).await;
    server.stop().await;
}

#[tokio::test]
async fn event_row_id_operators_select_every_event_of_the_row() {
    let (_db, server) = eight_events().await;
    let data = server
        .data(
            "{ BBR_Events { nodes { object_datafordelerRowId } } }",
            json!({}),
        )
        .await;
    let row = |eventid: usize| {
        data["BBR_Events"]["nodes"][eventid - 1]["object_datafordelerRowId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (b1, b2, b3) = (row(1), row(2), row(3));
    assert_eq!(row(4), b2, "an update keeps the row id");

    let expected = vec![
        (
            format!(r#"{{object_datafordelerRowId: {{eq: "{b2}"}}}}"#),
            vec![2, 4],
        ),
        (
            format!(r#"{{object_datafordelerRowId: {{in: ["{b1}", "{b3}"]}}}}"#),
            vec![1, 3, 5, 7],
        ),
        (
            format!(r#"{{object_datafordelerRowId: {{neq: "{b2}"}}}}"#),
            vec![1, 3, 5, 6, 7, 8],
        ),
        (
            format!(r#"{{object_datafordelerRowId: {{nin: ["{b1}", "{b2}"]}}}}"#),
            vec![3, 5, 6, 8],
        ),
    ];
    assert_cases(&server, "BBR_Events", "eventid", &expected).await;
    server.stop().await;
}
