//! The importer against a real PostgreSQL: exact events, sequence rules, refusals.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestDb, bygning, delete, municipality_fields, upsert, uuid};
use fordeler::import::{ImportError, Outcome};
use serde_json::{Value, json};

fn actions(events: &[Value]) -> Vec<(i64, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["eventid"].as_i64().unwrap(),
                e["eventaction"].as_str().unwrap().to_owned(),
                e["object_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn new_changed_deleted_and_unchanged_rows_make_exactly_their_events() {
    let db = TestDb::new().await;
    let first = db.package(
        "BBR",
        1,
        &[
            bygning("k1", &uuid(1), "0101"),
            bygning("k2", &uuid(2), "0147"),
            bygning("k3", &uuid(3), "0151"),
        ],
    );
    let summary = db.import(&first).await.unwrap();
    assert_eq!(
        (
            summary.inserted,
            summary.events,
            summary.first_eventid,
            summary.last_eventid
        ),
        (3, 3, Some(1), Some(3))
    );

    let mut changed = bygning("k2", &uuid(2), "0147");
    changed["registreringTil"] = json!("2026-02-01T00:00:00Z");
    let second = db.package(
        "BBR",
        2,
        &[
            bygning("k1", &uuid(1), "0101"),
            changed,
            delete("Bygning", "k3"),
            bygning("k4", &uuid(4), "0101"),
        ],
    );
    let summary = db.import(&second).await.unwrap();
    assert_eq!(
        (
            summary.inserted,
            summary.updated,
            summary.deleted,
            summary.unchanged
        ),
        (1, 1, 1, 1)
    );

    let events = db.events("BBR").await;
    let expected = [
        (1, "i", uuid(1)),
        (2, "i", uuid(2)),
        (3, "i", uuid(3)),
        (4, "u", uuid(2)),
        (5, "d", uuid(3)),
        (6, "i", uuid(4)),
    ];
    let expected: Vec<(i64, String, String)> = expected
        .into_iter()
        .map(|(id, a, o)| (id, a.to_owned(), o))
        .collect();
    assert_eq!(actions(&events), expected);

    let update = &events[3];
    assert_eq!(update["object_datafordelerRowVersion"], 2);
    assert_eq!(
        update["object_registreringtil"],
        "2026-02-01T00:00:00+00:00"
    );
    assert_eq!(
        update["object_datafordelerRowId"], events[1]["object_datafordelerRowId"],
        "the row keeps its id"
    );
    assert_eq!(update["datafordelerRegisterImportSequenceNumber"], 2);
    assert_eq!(update["entityname"], "Bygning");
    assert_eq!(update["fromfailedimport"], false);
    let deleted = &events[4];
    assert_eq!(deleted["object_datafordelerRowVersion"], 1);
    assert_eq!(
        deleted["object_registreringfra"], "2026-01-01T00:00:00+00:00",
        "a d event carries the deleted row's values"
    );
    assert_eq!(db.count_rows("BBR", "Bygning").await, 3);
    assert_eq!(db.register_state("BBR").await, (2, 6, 3));
}

#[tokio::test]
async fn cpr_events_carry_the_municipality_before_and_after_the_change() {
    let db = TestDb::new().await;
    let person = |kommune: &str| {
        json!({"entity": "Person", "op": "upsert", "key": "p1", "registreringFra": "2026-01-01T00:00:00Z",
            "virkningFra": "1990-01-01T00:00:00Z", "attributes": {"personnummer": "0101901234", "kommunekode": kommune}})
    };
    db.import(&db.package("CPR", 1, &[person("0101")]))
        .await
        .unwrap();
    db.import(&db.package("CPR", 2, &[person("0751")]))
        .await
        .unwrap();
    db.import(&db.package("CPR", 3, &[delete("Person", "p1")]))
        .await
        .unwrap();
    let fields = municipality_fields(&db.events("CPR").await);
    let expected = [
        ("i", json!("0101"), Value::Null),
        ("u", json!("0751"), json!("0101")),
        ("d", json!("0751"), json!("0751")),
    ];
    let expected: Vec<(String, Value, Value)> = expected
        .into_iter()
        .map(|(a, n, o)| (a.to_owned(), n, o))
        .collect();
    assert_eq!(fields, expected, "an in-place move shows on its u event");
}

#[tokio::test]
async fn re_delivering_an_imported_package_is_a_no_op() {
    let db = TestDb::new().await;
    let path = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]);
    db.import(&path).await.unwrap();
    let again = db.import(&path).await.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyImported);
    assert_eq!(db.events("BBR").await.len(), 1);
    assert_eq!(db.register_state("BBR").await, (1, 1, 1));
}

#[tokio::test]
async fn a_gzip_package_with_the_same_content_counts_as_the_same_package() {
    let db = TestDb::new().await;
    let plain = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]);
    db.import(&plain).await.unwrap();
    let gz = db.dir.path().join("again.ndjson.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    std::io::copy(&mut std::fs::File::open(&plain).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    assert_eq!(
        db.import(&gz).await.unwrap().outcome,
        Outcome::AlreadyImported
    );
}

#[tokio::test]
async fn a_package_after_a_gap_is_refused_naming_the_expected_sequence() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]))
        .await
        .unwrap();
    let error = db
        .import(&db.package("BBR", 3, &[bygning("k2", &uuid(2), "0101")]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ImportError::Gap {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("expected package 2 of BBR, got 3"),
        "{error}"
    );
    assert_eq!(error.exit_code(), 4);
    assert_eq!(db.register_state("BBR").await, (1, 1, 1));
}

#[tokio::test]
async fn a_re_delivered_package_with_other_content_is_refused() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]))
        .await
        .unwrap();
    let other = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0147")]);
    let error = db.import(&other).await.unwrap_err();
    assert!(
        matches!(error, ImportError::Conflict { sequence: 1, .. }),
        "{error}"
    );
    assert_eq!(error.exit_code(), 5);
    assert_eq!(db.events("BBR").await.len(), 1);
}

#[tokio::test]
async fn a_key_twice_in_one_package_is_refused_with_both_lines() {
    let db = TestDb::new().await;
    let path = db.package(
        "BBR",
        1,
        &[
            bygning("k1", &uuid(1), "0101"),
            bygning("k2", &uuid(2), "0101"),
            bygning("k1", &uuid(1), "0147"),
        ],
    );
    let error = db.import(&path).await.unwrap_err().to_string();
    assert!(
        error.contains(":4: field \"key\"") && error.contains("lines 2 and 4"),
        "{error}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
}

#[tokio::test]
async fn the_same_key_in_two_entities_is_two_rows() {
    let db = TestDb::new().await;
    let mut grund = bygning("k1", &uuid(2), "0101");
    grund["entity"] = json!("Grund");
    grund["attributes"] = json!({"id_lokalId": uuid(2), "kommunekode": "0101"});
    let summary = db
        .import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101"), grund]))
        .await
        .unwrap();
    assert_eq!(summary.inserted, 2);
}

/// Imports a package whose `bad` row (line 3, after a valid row on line 2) must be refused with
/// `expected` in the message, and checks that nothing was applied and the failure was recorded.
async fn assert_refused(bad: Value, expected: &str) {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &[bygning("k0", &uuid(100), "0101")]))
        .await
        .unwrap();
    let path = db.package("BBR", 2, &[bygning("k1", &uuid(1), "0101"), bad]);
    let error = db.import(&path).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ImportError::Invalid(_)), "{message}");
    assert_eq!(error.exit_code(), 3);
    let file = path.display().to_string();
    assert!(
        message.starts_with(&format!("{file}:3: ")),
        "names file and line: {message}"
    );
    assert!(
        message.contains(expected),
        "expected {expected:?} in {message}"
    );
    assert_eq!(
        db.register_state("BBR").await,
        (1, 1, 1),
        "nothing of the package applied"
    );
    assert_eq!(db.count_rows("BBR", "Bygning").await, 1);
    let recorded: (String, i64) =
        sqlx::query_as("SELECT kind, sequence FROM import_failures ORDER BY id DESC LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(recorded, ("invalid".to_owned(), 2));
}

fn with(mut row: Value, path: &[&str], value: Value) -> Value {
    let mut target = &mut row;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target[path[path.len() - 1]] = value;
    row
}

fn without(mut row: Value, path: &[&str]) -> Value {
    let mut target = &mut row;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target.as_object_mut().unwrap().remove(path[path.len() - 1]);
    row
}

#[tokio::test]
async fn an_unknown_entity_is_refused() {
    assert_refused(
        with(
            bygning("k9", &uuid(9), "0101"),
            &["entity"],
            json!("Bygnig"),
        ),
        "field \"entity\": unknown entity \"Bygnig\"",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_attribute_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "hoejde"],
        json!(12),
    );
    assert_refused(
        row,
        "field \"attributes.hoejde\": entity Bygning has no attribute \"hoejde\"",
    )
    .await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "byg026Opfoerelsesaar"],
        json!("nitten"),
    );
    assert_refused(
        row,
        "field \"attributes.byg026Opfoerelsesaar\": expected an integer",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_uuid_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "id_lokalId"],
        json!("not-a-uuid"),
    );
    assert_refused(row, "field \"attributes.id_lokalId\": expected a UUID").await;
}

#[tokio::test]
async fn a_missing_required_attribute_is_refused() {
    assert_refused(
        without(
            bygning("k9", &uuid(9), "0101"),
            &["attributes", "kommunekode"],
        ),
        "field \"attributes.kommunekode\": is required",
    )
    .await;
}

#[tokio::test]
async fn a_null_required_attribute_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "kommunekode"],
        Value::Null,
    );
    assert_refused(row, "field \"attributes.kommunekode\": is required").await;
}

#[tokio::test]
async fn a_period_that_ends_before_it_starts_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["virkningTil"],
        json!("2019-01-01T00:00:00Z"),
    );
    assert_refused(row, "field \"virkningTil\": virkningTil (2019-01-01T00:00:00.000000Z) must be after virkningFra").await;
}

#[tokio::test]
async fn an_empty_registration_period_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["registreringTil"],
        json!("2026-01-01T00:00:00Z"),
    );
    assert_refused(row, "field \"registreringTil\"").await;
}

#[tokio::test]
async fn a_missing_bitemporal_start_is_refused() {
    assert_refused(
        without(bygning("k9", &uuid(9), "0101"), &["registreringFra"]),
        "field \"registreringFra\": is required",
    )
    .await;
}

#[tokio::test]
async fn a_bad_timestamp_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["virkningFra"],
        json!("2020-13-01"),
    );
    assert_refused(
        row,
        "field \"virkningFra\": \"2020-13-01\" is not an RFC 3339 timestamp",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_operation_is_refused() {
    assert_refused(
        with(bygning("k9", &uuid(9), "0101"), &["op"], json!("merge")),
        "invalid row: unknown variant `merge`",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_row_field_is_refused() {
    assert_refused(
        with(bygning("k9", &uuid(9), "0101"), &["colour"], json!("red")),
        "unknown field `colour`",
    )
    .await;
}

#[tokio::test]
async fn a_delete_of_an_unknown_row_is_refused() {
    assert_refused(
        delete("Bygning", "nope"),
        "field \"key\": delete of a Bygning row that does not exist",
    )
    .await;
}

#[tokio::test]
async fn a_delete_with_attributes_is_refused() {
    let row = with(
        delete("Bygning", "k0"),
        &["attributes"],
        json!({"kommunekode": "0101"}),
    );
    assert_refused(
        row,
        "field \"attributes\": a delete carries only entity, op and key",
    )
    .await;
}

#[tokio::test]
async fn an_empty_key_is_refused() {
    assert_refused(
        with(bygning("k9", &uuid(9), "0101"), &["key"], json!("")),
        "field \"key\": must not be empty",
    )
    .await;
}

#[tokio::test]
async fn a_line_that_is_not_json_is_refused() {
    let db = TestDb::new().await;
    let path = db.dir.path().join("broken.ndjson");
    let header = r#"{"format":"fordeler-package/1","register":"BBR","sequence":1,"created":"2026-01-01T00:00:00Z"}"#;
    std::fs::write(
        &path,
        format!(
            "{header}\n{}\n{{\"entity\": \"Bygning\",\n",
            bygning("k1", &uuid(1), "0101")
        ),
    )
    .unwrap();
    let message = db.import(&path).await.unwrap_err().to_string();
    assert!(
        message.contains("broken.ndjson:3: invalid row: EOF while parsing"),
        "{message}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
}

#[tokio::test]
async fn a_truncated_package_is_refused_by_its_row_count() {
    let db = TestDb::new().await;
    let path = db.dir.path().join("short.ndjson");
    let header = r#"{"format":"fordeler-package/1","register":"BBR","sequence":1,"created":"2026-01-01T00:00:00Z","rows":3}"#;
    std::fs::write(
        &path,
        format!("{header}\n{}\n", bygning("k1", &uuid(1), "0101")),
    )
    .unwrap();
    let message = db.import(&path).await.unwrap_err().to_string();
    assert!(
        message.contains("field \"rows\": the header announces 3 rows but the file has 1"),
        "{message}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
}

#[tokio::test]
async fn a_truncated_gzip_file_is_refused() {
    let db = TestDb::new().await;
    let plain = db.package(
        "BBR",
        1,
        &(0..200)
            .map(|n| bygning(&format!("k{n}"), &uuid(n), "0101"))
            .collect::<Vec<_>>(),
    );
    let mut bytes = Vec::new();
    let mut encoder = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::default());
    std::io::copy(&mut std::fs::File::open(&plain).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    let cut = db.dir.path().join("cut.ndjson.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let message = db.import(&cut).await.unwrap_err().to_string();
    assert!(
        message.contains("cut.ndjson.gz:") && message.contains("truncated or corrupt"),
        "{message}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
}

#[tokio::test]
async fn a_header_naming_an_unknown_register_is_refused() {
    let db = TestDb::new().await;
    let path = db.package("DAR", 1, &[bygning("k1", &uuid(1), "0101")]);
    let message = db.import(&path).await.unwrap_err().to_string();
    assert!(
        message.contains(":1: field \"register\": unknown register \"DAR\" (known: BBR, CPR, CVR)"),
        "{message}"
    );
}

#[tokio::test]
async fn text_with_tabs_newlines_and_backslashes_round_trips() {
    let db = TestDb::new().await;
    let tricky = "a\tb\nc\\d \"e\" æøå \\N";
    let row = with(
        bygning("k1", &uuid(1), "0101"),
        &["attributes", "virkningsaktoer"],
        json!(tricky),
    );
    db.import(&db.package("BBR", 1, &[row])).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT \"virkningsaktoer\" FROM reg_bbr.bygning")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, tricky);
}

#[tokio::test]
async fn a_nul_character_in_text_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "virkningsaktoer"],
        json!("a\u{0}b"),
    );
    assert_refused(
        row,
        "field \"attributes.virkningsaktoer\": contains a NUL character",
    )
    .await;
}

#[tokio::test]
async fn a_bitemporal_correction_tells_a_cpr_move_on_its_replacement_registration() {
    let db = TestDb::new().await;
    let registration = |key: &str,
                        reg: (&str, Option<&str>),
                        virk: (&str, Option<&str>),
                        kommune: &str| {
        json!({"entity": "Person", "op": "upsert", "key": key,
            "registreringFra": reg.0, "registreringTil": reg.1, "virkningFra": virk.0, "virkningTil": virk.1,
            "attributes": {"personnummer": "0101901234", "kommunekode": kommune}})
    };
    let t0 = "2026-01-01T00:00:00Z";
    let t1 = "2026-03-01T00:00:00Z";
    let moved = "2026-02-15T00:00:00Z";
    db.import(&db.package(
        "CPR",
        1,
        &[registration(
            "r0",
            (t0, None),
            ("1990-01-01T00:00:00Z", None),
            "0101",
        )],
    ))
    .await
    .unwrap();
    let correction = [
        registration("r0", (t0, Some(t1)), ("1990-01-01T00:00:00Z", None), "0101"),
        registration(
            "r1",
            (t1, None),
            ("1990-01-01T00:00:00Z", Some(moved)),
            "0101",
        ),
        registration("r2", (t1, None), (moved, None), "0751"),
    ];
    db.import(&db.package("CPR", 2, &correction)).await.unwrap();
    let events = db.events("CPR").await;
    let seen = municipality_fields(&events[1..]);
    assert_eq!(
        seen,
        vec![
            ("u".to_owned(), json!("0101"), json!("0101")),
            ("i".to_owned(), json!("0101"), json!("0101")),
            ("i".to_owned(), json!("0751"), json!("0101")),
        ]
    );
}

#[tokio::test]
async fn an_attribute_given_twice_is_refused() {
    let db = TestDb::new().await;
    let path = db.dir.path().join("twice.ndjson");
    let header = r#"{"format":"fordeler-package/1","register":"BBR","sequence":1,"created":"2026-01-01T00:00:00Z"}"#;
    let row = r#"{"entity":"Bygning","op":"upsert","key":"k1","registreringFra":"2026-01-01T00:00:00Z","virkningFra":"2020-01-01T00:00:00Z","attributes":{"id_lokalId":"00000000-0000-4000-8000-000000000001","kommunekode":"0101","kommunekode":"0147"}}"#;
    std::fs::write(&path, format!("{header}\n{row}\n")).unwrap();
    let message = db.import(&path).await.unwrap_err().to_string();
    assert!(
        message.contains("twice.ndjson:2: field \"attributes.kommunekode\": given twice"),
        "{message}"
    );
}

#[tokio::test]
async fn a_date_without_a_four_digit_year_is_refused_not_reinterpreted() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["attributes", "byg094Revisionsdato"],
        json!("05-06-07"),
    );
    assert_refused(
        row,
        "field \"attributes.byg094Revisionsdato\": expected a date \"YYYY-MM-DD\"",
    )
    .await;
}

#[tokio::test]
async fn a_timestamp_in_year_zero_is_refused() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["virkningFra"],
        json!("0000-06-01T00:00:00Z"),
    );
    assert_refused(
        row,
        "field \"virkningFra\": \"0000-06-01T00:00:00Z\" is outside the years 0001-9999",
    )
    .await;
}

#[tokio::test]
async fn a_field_of_the_wrong_json_type_is_named() {
    let row = with(
        bygning("k9", &uuid(9), "0101"),
        &["registreringFra"],
        json!(20260101),
    );
    assert_refused(row, "field \"registreringFra\": invalid row: invalid type: integer `20260101`, expected a string").await;
}

#[tokio::test]
async fn any_valid_offset_and_precision_is_stored_as_the_same_instant() {
    let db = TestDb::new().await;
    let mut row = bygning("k1", &uuid(1), "0101");
    // +20:00 is valid RFC 3339 but beyond what PostgreSQL parses; nanoseconds are truncated to
    // microseconds; a urn:uuid object id is stored hyphenated.
    row["registreringFra"] = json!("2026-01-02T20:00:00.123456789+20:00");
    row["attributes"]["id_lokalId"] = json!(format!("urn:uuid:{}", uuid(1)));
    db.import(&db.package("BBR", 1, &[row])).await.unwrap();
    let (fra, id): (String, String) = sqlx::query_as(
        "SELECT to_char(\"registreringFra\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), \"id_lokalId\"::text FROM reg_bbr.bygning",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((fra.as_str(), id), ("2026-01-02T00:00:00.123456", uuid(1)));
}

/// A register with one attribute of every type, to check what reaches PostgreSQL.
const EVERY_TYPE: &str = r#"
name = "TYP"
title = "Every attribute type"
[[entities]]
name = "Ting"
object_id = "lokalId"
[[entities.attributes]]
name = "lokalId"
type = "uuid"
required = true
[[entities.attributes]]
name = "tekst"
type = "text"
[[entities.attributes]]
name = "heltal"
type = "integer"
[[entities.attributes]]
name = "beloeb"
type = "decimal"
[[entities.attributes]]
name = "flag"
type = "boolean"
[[entities.attributes]]
name = "dato"
type = "date"
[[entities.attributes]]
name = "tidspunkt"
type = "timestamp"
"#;

/// Every attribute type is stored exactly as validated, on either side of PostgreSQL's epoch
/// (2000-01-01) and the Unix epoch, and nulls stay null.
#[tokio::test]
async fn every_attribute_type_is_stored_exactly_as_validated() {
    let mut db = TestDb::new().await;
    let register =
        fordeler::registry::parse_definition(std::path::Path::new("TYP.toml"), EVERY_TYPE).unwrap();
    let mut registers = db.registry.registers().to_vec();
    registers.push(register);
    db.registry = fordeler::registry::Registry::new(registers);
    fordeler::store::sync_registers(&db.pool, &db.registry)
        .await
        .unwrap();
    let ting = |key: &str, attributes: Value| {
        json!({"entity": "Ting", "op": "upsert", "key": key,
               "registreringFra": "1969-07-20T20:17:40.5-01:00", "virkningFra": "2031-01-01T00:00:00Z",
               "attributes": attributes})
    };
    let rows = [
        ting(
            "old",
            json!({"lokalId": uuid(1).to_uppercase(), "tekst": "a\tb\\N", "heltal": -9_007_199_254_740_993_i64,
                   "beloeb": "-12.50", "flag": false, "dato": "1969-07-20",
                   "tidspunkt": "1999-12-31T23:59:59.999999Z"}),
        ),
        ting(
            "new",
            json!({"lokalId": uuid(2), "heltal": 0, "beloeb": "1e3", "flag": true, "dato": "2000-01-01",
                   "tidspunkt": "2000-01-01T00:00:00+00:00"}),
        ),
    ];
    db.import(&db.package("TYP", 1, &rows)).await.unwrap();
    let stored: Vec<(String, Value)> = sqlx::query_as(
        "SELECT rowkey, jsonb_build_object('id', \"lokalId\", 'tekst', tekst, 'heltal', heltal,
             'beloeb', beloeb::text, 'flag', flag, 'dato', dato,
             'tidspunkt', to_char(tidspunkt AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),
             'fra', to_char(\"registreringFra\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'))
         FROM reg_typ.ting ORDER BY rowkey",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            (
                "new".to_owned(),
                json!({"id": uuid(2), "tekst": null, "heltal": 0, "beloeb": "1000", "flag": true,
                       "dato": "2000-01-01", "tidspunkt": "2000-01-01T00:00:00.000000",
                       "fra": "1969-07-20T21:17:40.500000"})
            ),
            (
                "old".to_owned(),
                json!({"id": uuid(1), "tekst": "a\tb\\N", "heltal": -9_007_199_254_740_993_i64,
                       "beloeb": "-12.50", "flag": false, "dato": "1969-07-20",
                       "tidspunkt": "1999-12-31T23:59:59.999999", "fra": "1969-07-20T21:17:40.500000"})
            ),
        ]
    );
}

/// A package applied in batches of `batch_rows` (the parser runs a batch ahead of PostgreSQL)
/// ends as in one batch: the same rows, the same events, numbered 1..n without a hole; only the
/// order of a package's events among entities differs (batch by batch).
#[tokio::test]
async fn batches_change_nothing_but_the_order_of_a_packages_events() {
    let whole = TestDb::new().await;
    let batched = TestDb::new().await;
    let files = whole.generate("BBR", 3, 2_000, 5);
    for file in &files {
        whole.import(file).await.unwrap();
        let summary = batched.import_in_batches(file, 150).await.unwrap();
        assert_eq!(summary.rows_read, 2_000);
    }
    let without_ids = |events: Vec<Value>| {
        let mut events: Vec<String> = events
            .into_iter()
            .map(|mut e| {
                let object = e.as_object_mut().unwrap();
                object.remove("eventid");
                object.remove("object_datafordelerRowId");
                object.remove("datafordelerOpdateringstid");
                e.to_string()
            })
            .collect();
        events.sort();
        events
    };
    let batched_events = batched.events("BBR").await;
    let ids: Vec<i64> = batched_events
        .iter()
        .map(|e| e["eventid"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        without_ids(batched_events),
        without_ids(whole.events("BBR").await)
    );
    let (whole_rows, batched_rows) = (stored_rows(&whole).await, stored_rows(&batched).await);
    assert!(
        whole_rows.len() > 5_000,
        "rows and state: {}",
        whole_rows.len()
    );
    assert_eq!(batched_rows, whole_rows);
}

/// The fingerprint's rows and register state, sorted: everything but the events.
async fn stored_rows(db: &TestDb) -> Vec<String> {
    let mut rows: Vec<String> = db
        .fingerprint("BBR")
        .await
        .into_iter()
        .filter(|line| !line.starts_with('{'))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_key_twice_in_different_batches_is_refused_and_nothing_is_applied() {
    let db = TestDb::new().await;
    let rows: Vec<Value> = (1..=5)
        .map(|k| bygning(&format!("k{k}"), &uuid(k), "0101"))
        .chain([delete("Bygning", "k2")])
        .collect();
    let error = db
        .import_in_batches(&db.package("BBR", 1, &rows), 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(":7: field \"key\"") && error.contains("lines 3 and 7"),
        "the delete in batch 3 of the row batch 1 inserted: {error}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
    assert_eq!(db.count_rows("BBR", "Bygning").await, 0);
}

#[tokio::test]
async fn a_bad_row_in_a_later_batch_leaves_nothing_of_the_earlier_ones() {
    let db = TestDb::new().await;
    let mut rows: Vec<Value> = (1..=6)
        .map(|k| bygning(&format!("k{k}"), &uuid(k), "0101"))
        .collect();
    rows.push(with(
        bygning("k7", &uuid(7), "0101"),
        &["attributes", "byg026Opfoerelsesaar"],
        json!("nineteen"),
    ));
    let error = db
        .import_in_batches(&db.package("BBR", 1, &rows), 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(":8: field \"attributes.byg026Opfoerelsesaar\""),
        "{error}"
    );
    assert_eq!(db.register_state("BBR").await, (0, 0, 0));
    assert!(db.events("BBR").await.is_empty());
    assert_eq!(db.count_rows("BBR", "Bygning").await, 0);
}

/// A store made by an earlier version (a hash index on `rowkey`) gets the current layout at
/// the next start, and its rows are still found by the next import.
#[tokio::test]
async fn a_store_of_an_earlier_layout_is_brought_up_to_date_at_start() {
    let db = TestDb::new().await;
    db.import(&db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]))
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP INDEX reg_bbr.bygning__rowkey;
         CREATE INDEX bygning__rowkey ON reg_bbr.bygning USING hash (rowkey);
         UPDATE registers SET definition_sha256 = 'an earlier layout'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    fordeler::store::sync_registers(&db.pool, &db.registry)
        .await
        .unwrap();
    let method: String = sqlx::query_scalar(
        "SELECT am.amname::text FROM pg_class i JOIN pg_am am ON am.oid = i.relam
         WHERE i.relname = 'bygning__rowkey'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(method, "btree");
    let mut changed = bygning("k1", &uuid(1), "0101");
    changed["registreringTil"] = json!("2026-02-01T00:00:00Z");
    let summary = db.import(&db.package("BBR", 2, &[changed])).await.unwrap();
    assert_eq!((summary.inserted, summary.updated), (0, 1));
}

/// An `old` extra event field is the value before the package, so a register with one (CPR)
/// applies each package as one batch: a registration inserted earlier in the same package is
/// not "before" the ones after it, whatever the batch size asked for.
#[tokio::test]
async fn old_values_come_from_before_the_package_whatever_the_batch_size() {
    let db = TestDb::new().await;
    let registration = |key: &str, registered: &str, valid: (&str, Option<&str>), kommune: &str| {
        upsert(
            "Person",
            key,
            (registered, None),
            valid,
            json!({"personnummer": "0101901234", "kommunekode": kommune}),
        )
    };
    let (t0, t1, moved) = (
        "2026-01-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
        "2026-02-15T00:00:00Z",
    );
    let born = "1990-01-01T00:00:00Z";
    db.import(&db.package("CPR", 1, &[registration("r0", t0, (born, None), "0101")]))
        .await
        .unwrap();
    let package = db.package(
        "CPR",
        2,
        &[
            registration("r1", t1, (born, Some(moved)), "0999"),
            registration("r2", t1, (moved, None), "0751"),
        ],
    );
    db.import_in_batches(&package, 1).await.unwrap();
    let events = db.events("CPR").await;
    assert_eq!(
        municipality_fields(&events[1..]),
        [
            ("i".to_owned(), json!("0999"), json!("0101")),
            ("i".to_owned(), json!("0751"), json!("0101")),
        ]
    );
}
