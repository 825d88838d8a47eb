//! Entity rows over real HTTP: bitemporal lookups across a correction, row-id lookups that reach
//! closed registrations, deleted rows, the two-step sync of Datafordeler's C1 query, and
//! `RegisterImportStatus`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestDb, TestServer, delete, upsert, uuid};
use serde_json::{Value, json};

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-03-01T00:00:00Z";
const V0: &str = "2020-01-01T00:00:00Z";
const VC: &str = "2024-06-01T00:00:00Z";

/// One registration of building `uuid(n)`; `forretningsproces` names the registration.
fn registration(
    key: &str,
    n: u32,
    registrering: (&str, Option<&str>),
    virkning: (&str, Option<&str>),
    name: &str,
    opfoerelsesaar: i64,
) -> Value {
    upsert(
        "Bygning",
        key,
        registrering,
        virkning,
        json!({"id_lokalId": uuid(n), "kommunekode": "0101", "byg026Opfoerelsesaar": opfoerelsesaar,
            "forretningsproces": name}),
    )
}

/// Package 1 registers buildings 1-4 at T0 (building 3 valid only from 2030); package 2
/// corrects building 1 at T1 and deletes building 4:
///
/// | key | building | registrering | virkning     | forretningsproces | opførelsesår |
/// |-----|----------|--------------|--------------|-------------------|--------------|
/// | a0  | 1        | [T0, T1)     | [V0, ∞)      | a0                | 1932         |
/// | a1  | 1        | [T1, ∞)      | [V0, VC)     | a1                | 1932         |
/// | a2  | 1        | [T1, ∞)      | [VC, ∞)      | a2                | 1950         |
/// | b0  | 2        | [T0, ∞)      | [V0, ∞)      | b0                | 1960         |
/// | c0  | 3        | [T0, ∞)      | [2030, ∞)    | c0                | 2030         |
/// | d0  | 4        | deleted      |              |                   |              |
async fn corrected_building() -> (TestDb, TestServer) {
    let db = TestDb::new().await;
    let first = [
        registration("a0", 1, (T0, None), (V0, None), "a0", 1932),
        registration("b0", 2, (T0, None), (V0, None), "b0", 1960),
        registration(
            "c0",
            3,
            (T0, None),
            ("2030-01-01T00:00:00Z", None),
            "c0",
            2030,
        ),
        registration("d0", 4, (T0, None), (V0, None), "d0", 1970),
    ];
    db.import(&db.package("BBR", 1, &first)).await.unwrap();
    let correction = [
        registration("a0", 1, (T0, Some(T1)), (V0, None), "a0", 1932),
        registration("a1", 1, (T1, None), (V0, Some(VC)), "a1", 1932),
        registration("a2", 1, (T1, None), (VC, None), "a2", 1950),
        delete("Bygning", "d0"),
    ];
    db.import(&db.package("BBR", 2, &correction)).await.unwrap();
    let server = TestServer::start(&db).await;
    (db, server)
}

/// The registrations (`forretningsproces`) `BBR_Bygning` returns at a bitemporal point
/// (`None`: the argument is left out), optionally of one building only.
async fn registrations_at(
    server: &TestServer,
    registreringstid: Option<&str>,
    virkningstid: Option<&str>,
    building: Option<u32>,
) -> Vec<String> {
    let filter = building.map_or("{}".to_owned(), |n| {
        format!(r#"{{id_lokalId: {{eq: "{}"}}}}"#, uuid(n))
    });
    let query = format!(
        "query($r: DafDateTime, $v: DafDateTime) {{
            BBR_Bygning(registreringstid: $r, virkningstid: $v, where: {filter}) {{
                nodes {{ forretningsproces }} }} }}"
    );
    let data = server
        .data(&query, json!({"r": registreringstid, "v": virkningstid}))
        .await;
    let mut names: Vec<String> = data["BBR_Bygning"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["forretningsproces"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn registreringstid_and_virkningstid_select_the_registration_valid_at_each_point() {
    let (_db, server) = corrected_building().await;

    let points: [(Option<&str>, Option<&str>, &[&str]); 15] = [
        (
            Some("2026-02-01T00:00:00Z"),
            Some("2025-01-01T00:00:00Z"),
            &["a0"],
        ),
        (
            Some("2026-02-01T00:00:00Z"),
            Some("2023-01-01T00:00:00Z"),
            &["a0"],
        ),
        (
            Some("2026-02-01T00:00:00Z"),
            Some("2019-12-31T23:59:59Z"),
            &[],
        ),
        (Some("2026-02-01T00:00:00Z"), None, &["a0"]),
        (
            Some("2025-12-31T23:59:59.999999Z"),
            Some("2025-01-01T00:00:00Z"),
            &[],
        ),
        (Some(T0), Some("2025-01-01T00:00:00Z"), &["a0"]),
        (
            Some("2026-02-28T23:59:59.999999Z"),
            Some("2023-01-01T00:00:00Z"),
            &["a0"],
        ),
        (Some(T1), Some("2023-01-01T00:00:00Z"), &["a1"]),
        (Some(T1), Some("2024-05-31T23:59:59.999999Z"), &["a1"]),
        (Some(T1), Some(VC), &["a2"]),
        (Some("2026-03-01T01:00:00+01:00"), Some(VC), &["a2"]),
        (None, Some("2023-01-01T00:00:00Z"), &["a1"]),
        (None, Some("2025-01-01T00:00:00Z"), &["a2"]),
        (None, Some("2031-01-01T00:00:00Z"), &["a2"]),
        (None, None, &["a2"]),
    ];
    for (registreringstid, virkningstid, expected) in points {
        assert_eq!(
            registrations_at(&server, registreringstid, virkningstid, Some(1)).await,
            expected,
            "building 1 at registreringstid {registreringstid:?}, virkningstid {virkningstid:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn without_times_only_the_rows_valid_now_are_returned() {
    let (_db, server) = corrected_building().await;

    let now = registrations_at(&server, None, None, None).await;
    let in_2031 = registrations_at(&server, None, Some("2031-01-01T00:00:00Z"), None).await;
    let before_correction =
        registrations_at(&server, Some("2026-02-01T00:00:00Z"), None, None).await;

    assert_eq!(now, ["a2", "b0"]);
    assert_eq!(in_2031, ["a2", "b0", "c0"]);
    assert_eq!(before_correction, ["a0", "b0"], "the deleted d0 is gone");
    server.stop().await;
}

/// The row id of each registration, from the `i` events.
async fn row_ids(server: &TestServer) -> std::collections::HashMap<String, String> {
    let data = server
        .data(
            r#"{ BBR_Events(where: {eventaction: {eq: "i"}}) { nodes { eventid object_datafordelerRowId } } }"#,
            json!({}),
        )
        .await;
    let names = ["a0", "b0", "c0", "d0", "a1", "a2"];
    data["BBR_Events"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(names)
        .map(|(n, name)| {
            (
                name.to_owned(),
                n["object_datafordelerRowId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const BY_ROW_ID: &str = "query($ids: [UUID!], $r: DafDateTime, $v: DafDateTime) {
  BBR_Bygning(where: {datafordelerRowId: {in: $ids}}, registreringstid: $r, virkningstid: $v) {
    nodes { datafordelerRowId forretningsproces registreringFra registreringTil virkningFra virkningTil byg026Opfoerelsesaar }
  }
}";

#[tokio::test]
async fn a_row_id_lookup_without_times_reaches_a_closed_registration() {
    let (_db, server) = corrected_building().await;
    let ids = row_ids(&server).await;

    let data = server
        .data(
            "query($id: UUID) { BBR_Bygning(where: {datafordelerRowId: {eq: $id}}) {
                nodes { datafordelerRowId forretningsproces registreringFra registreringTil virkningFra virkningTil byg026Opfoerelsesaar datafordelerRowVersion } } }",
            json!({"id": ids["a0"]}),
        )
        .await;

    assert_eq!(
        data["BBR_Bygning"]["nodes"],
        json!([{
            "datafordelerRowId": ids["a0"], "forretningsproces": "a0",
            "registreringFra": "2026-01-01T00:00:00.000000Z",
            "registreringTil": "2026-03-01T00:00:00.000000Z",
            "virkningFra": "2020-01-01T00:00:00.000000Z", "virkningTil": null,
            "byg026Opfoerelsesaar": 1932, "datafordelerRowVersion": 2
        }])
    );
    server.stop().await;
}

#[tokio::test]
async fn an_in_list_of_row_ids_returns_every_listed_registration_current_or_not() {
    let (_db, server) = corrected_building().await;
    let ids = row_ids(&server).await;
    let listed = [&ids["a0"], &ids["a1"], &ids["a2"], &ids["c0"]];

    let data = server
        .data(BY_ROW_ID, json!({"ids": listed, "r": null, "v": null}))
        .await;

    let nodes = data["BBR_Bygning"]["nodes"].as_array().unwrap();
    let mut names: Vec<&str> = nodes
        .iter()
        .map(|n| n["forretningsproces"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a0", "a1", "a2", "c0"]);
    let returned: Vec<&str> = nodes
        .iter()
        .map(|n| n["datafordelerRowId"].as_str().unwrap())
        .collect();
    assert!(returned.windows(2).all(|w| w[0] < w[1]), "ascending row id");
    server.stop().await;
}

#[tokio::test]
async fn a_row_id_lookup_with_explicit_times_keeps_to_them() {
    let (_db, server) = corrected_building().await;
    let ids = row_ids(&server).await;
    let all = [&ids["a0"], &ids["a1"], &ids["a2"]];
    let names = |data: &Value| -> Vec<String> {
        let mut names: Vec<String> = data["BBR_Bygning"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["forretningsproces"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };

    let before = server
        .data(
            BY_ROW_ID,
            json!({"ids": all, "r": "2026-02-01T00:00:00Z", "v": null}),
        )
        .await;
    let valid_2023 = server
        .data(
            BY_ROW_ID,
            json!({"ids": all, "r": null, "v": "2023-01-01T00:00:00Z"}),
        )
        .await;

    assert_eq!(names(&before), ["a0"]);
    assert_eq!(names(&valid_2023), ["a1"]);
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_row_is_gone_even_at_a_time_when_it_was_valid() {
    let (_db, server) = corrected_building().await;
    let ids = row_ids(&server).await;

    let by_row_id = server
        .data(BY_ROW_ID, json!({"ids": [ids["d0"]], "r": null, "v": null}))
        .await;
    let by_object = server
        .data(
            &format!(
                r#"{{ BBR_Bygning(registreringstid: "2026-02-01T00:00:00Z", where: {{id_lokalId: {{eq: "{}"}}}}) {{ nodes {{ forretningsproces }} }} }}"#,
                uuid(4)
            ),
            json!({}),
        )
        .await;

    assert_eq!(by_row_id["BBR_Bygning"]["nodes"], json!([]));
    assert_eq!(by_object["BBR_Bygning"]["nodes"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn every_event_leads_to_its_row_by_row_id_unless_the_row_was_deleted() {
    let (_db, server) = corrected_building().await;
    let events = server
        .data(
            "{ BBR_Events { nodes { eventid eventaction object_datafordelerRowId object_datafordelerRowVersion object_registreringtil } } }",
            json!({}),
        )
        .await;

    let mut fetched = Vec::new();
    for event in events["BBR_Events"]["nodes"].as_array().unwrap() {
        let data = server
            .data(
                "query($id: UUID) { BBR_Bygning(where: {datafordelerRowId: {eq: $id}}) {
                    nodes { datafordelerRowVersion registreringTil } } }",
                json!({"id": event["object_datafordelerRowId"]}),
            )
            .await;
        let nodes = data["BBR_Bygning"]["nodes"].as_array().unwrap().clone();
        fetched.push((
            event["eventid"].as_i64().unwrap(),
            event["eventaction"].as_str().unwrap().to_owned(),
            nodes,
        ));
    }

    // a0 (events 1 and 5) was closed by the correction: its row is at version 2.
    let latest_version = |eventid: i64| if eventid == 1 || eventid == 5 { 2 } else { 1 };
    for (eventid, action, nodes) in &fetched {
        if eventid == &4 || eventid == &8 {
            assert!(
                nodes.is_empty(),
                "event {eventid} ({action}): d0 is deleted"
            );
            continue;
        }
        assert_eq!(nodes.len(), 1, "event {eventid} ({action})");
        assert_eq!(
            nodes[0]["datafordelerRowVersion"],
            latest_version(*eventid),
            "event {eventid}"
        );
    }
    assert_eq!(
        fetched
            .iter()
            .map(|(id, action, _)| (*id, action.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "i"),
            (2, "i"),
            (3, "i"),
            (4, "i"),
            (5, "u"),
            (6, "i"),
            (7, "i"),
            (8, "d")
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_c1_query_fetches_the_row_an_event_names_with_variables() {
    let db = TestDb::new().await;
    let name = upsert(
        "Navn",
        "n17",
        ("2026-01-01T00:00:00Z", None),
        ("2019-06-01T00:00:00Z", None),
        json!({"navnId": 17, "CVREnhedsId": 4_000_000_001_i64, "vaerdi": "LEGO System A/S", "sekvens": 0}),
    );
    db.import(&db.package("CVR", 1, &[name])).await.unwrap();
    let server = TestServer::start(&db).await;
    let events = server
        .data(
            "{ CVR_Events(first: 1) { nodes { eventaction object_datafordelerRowId object_virkningfra } } }",
            json!({}),
        )
        .await;
    let event = &events["CVR_Events"]["nodes"][0];
    assert_eq!(event["eventaction"], "i");

    let data = server
        .data(
            "query ($at: DafDateTime, $rowId: UUID) {
  CVR_Navn(first: 1, virkningstid: $at, where: { datafordelerRowId: { eq: $rowId } }) { nodes { CVREnhedsId vaerdi datafordelerRowId } }
}",
            json!({"at": event["object_virkningfra"], "rowId": event["object_datafordelerRowId"]}),
        )
        .await;

    assert_eq!(
        data["CVR_Navn"]["nodes"],
        json!([{"CVREnhedsId": 4_000_000_001_i64, "vaerdi": "LEGO System A/S",
            "datafordelerRowId": event["object_datafordelerRowId"]}])
    );
    server.stop().await;
}

#[tokio::test]
async fn node_fields_render_as_the_scalars_say() {
    let db = TestDb::new().await;
    let name = upsert(
        "Navn",
        "n17",
        ("2026-01-01T12:34:56.1234567+02:00", None),
        ("2019-06-01T00:00:00Z", Some("2030-01-01T00:00:00Z")),
        json!({"navnId": 17, "CVREnhedsId": 4_000_000_001_i64, "vaerdi": "Café Åbogade ApS"}),
    );
    db.import(&db.package("CVR", 1, &[name])).await.unwrap();
    let server = TestServer::start(&db).await;

    let data = server
        .data(
            "{ CVR_Navn { nodes { id navnId vaerdi sekvens status registreringFra registreringTil virkningFra virkningTil datafordelerRowVersion datafordelerRegisterImportSequenceNumber } } }",
            json!({}),
        )
        .await;

    assert_eq!(
        data["CVR_Navn"]["nodes"],
        json!([{
            "id": "17", "navnId": 17, "vaerdi": "Café Åbogade ApS", "sekvens": null,
            "status": "gældende",
            "registreringFra": "2026-01-01T10:34:56.123456Z", "registreringTil": null,
            "virkningFra": "2019-06-01T00:00:00.000000Z", "virkningTil": "2030-01-01T00:00:00.000000Z",
            "datafordelerRowVersion": 1, "datafordelerRegisterImportSequenceNumber": 1
        }])
    );
    server.stop().await;
}

#[tokio::test]
async fn decimals_beyond_28_digits_are_returned_exactly() {
    let db = TestDb::new().await;
    let precise = "12345678901234567890123456789.123456789";
    let large = "100000000000000000000000000000000000000000";
    let employment = |n: i64, aarsvaerk: &str| {
        upsert(
            "Beskaeftigelse",
            &format!("e{n}"),
            ("2026-01-01T00:00:00Z", None),
            ("2025-01-01T00:00:00Z", None),
            json!({"beskaeftigelseId": n, "CVREnhedsId": 4_000_000_001_i64, "antalAarsvaerk": aarsvaerk}),
        )
    };
    let rows = [employment(1, precise), employment(2, large)];
    db.import(&db.package("CVR", 1, &rows)).await.unwrap();
    let server = TestServer::start(&db).await;

    let many_digits = server
        .post(
            "{ CVR_Beskaeftigelse(where: {beskaeftigelseId: {eq: 1}}) { nodes { antalAarsvaerk } } }",
            json!({}),
        )
        .await
        .1;
    let large_value = server
        .post(
            "{ CVR_Beskaeftigelse(where: {beskaeftigelseId: {eq: 2}}) { nodes { antalAarsvaerk } } }",
            json!({}),
        )
        .await
        .1;

    assert_eq!(
        many_digits,
        json!({"data": {"CVR_Beskaeftigelse": {"nodes": [{"antalAarsvaerk": precise}]}}})
    );
    assert_eq!(
        large_value,
        json!({"data": {"CVR_Beskaeftigelse": {"nodes": [{"antalAarsvaerk": large}]}}})
    );
    server.stop().await;
}

const STATUS: &str = "query($register: String) {
  RegisterImportStatus(register: $register) {
    register lastSequenceNumber lastEventId lastUpdated importRunning importingSequenceNumber
  }
}";

#[tokio::test]
async fn register_import_status_tells_each_registers_last_package_and_event() {
    let db = TestDb::new().await;
    let building = |n: u32| {
        upsert(
            "Bygning",
            &format!("k{n}"),
            (T0, None),
            (V0, None),
            json!({"id_lokalId": uuid(n), "kommunekode": "0101"}),
        )
    };
    let before = chrono::Utc::now();
    db.import(&db.package("BBR", 1, &[building(1), building(2)]))
        .await
        .unwrap();
    db.import(&db.package("BBR", 2, &[building(3), delete("Bygning", "k1")]))
        .await
        .unwrap();
    let unit = upsert(
        "CVREnhed",
        "c1",
        (T0, None),
        (V0, None),
        json!({"CVREnhedsId": 4_000_000_001_i64}),
    );
    db.import(&db.package("CVR", 1, &[unit])).await.unwrap();
    let after = chrono::Utc::now();
    let server = TestServer::start(&db).await;

    let data = server.data(STATUS, json!({})).await;

    let statuses = data["RegisterImportStatus"].as_array().unwrap();
    let summary: Vec<(&str, i64, i64, bool)> = statuses
        .iter()
        .map(|s| {
            (
                s["register"].as_str().unwrap(),
                s["lastSequenceNumber"].as_i64().unwrap(),
                s["lastEventId"].as_i64().unwrap(),
                s["importRunning"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("BBR", 2, 4, false),
            ("CPR", 0, 0, false),
            ("CVR", 1, 1, false)
        ]
    );
    let updated = |n: usize| {
        chrono::DateTime::parse_from_rfc3339(statuses[n]["lastUpdated"].as_str().unwrap()).unwrap()
    };
    assert!(before <= updated(0) && updated(0) <= updated(2) && updated(2) <= after);
    assert_eq!(statuses[1]["lastUpdated"], Value::Null);
    assert_eq!(statuses[0]["importingSequenceNumber"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn register_import_status_of_one_register_returns_only_that_register() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;

    let data = server.data(STATUS, json!({"register": "CVR"})).await;

    assert_eq!(
        data["RegisterImportStatus"],
        json!([{"register": "CVR", "lastSequenceNumber": 0, "lastEventId": 0, "lastUpdated": null,
            "importRunning": false, "importingSequenceNumber": null}])
    );
    server.stop().await;
}

#[tokio::test]
async fn register_import_status_of_an_unknown_register_is_bad_user_input() {
    let db = TestDb::new().await;
    let server = TestServer::start(&db).await;

    let code = server.error_code(STATUS, json!({"register": "XYZ"})).await;
    let lowercase = server.error_code(STATUS, json!({"register": "bbr"})).await;

    assert_eq!(code, "BAD_USER_INPUT");
    assert_eq!(lowercase, "BAD_USER_INPUT");
    server.stop().await;
}
