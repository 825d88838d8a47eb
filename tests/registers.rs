//! Register definitions: the three samples load, and every rule of
//! `docs/register-definitions.md` refuses a bad definition with a message naming the file and
//! the place at fault.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fordeler::registry::{self, AttrType, DefinitionError, EventValue, Register, Registry};

/// The file every inline definition pretends to come from.
const FILE: &str = "registers/TST.toml";

/// The smallest valid definition: one entity with an object id and one more attribute. Tests
/// mutate it with [`replaced`] or by appending text.
fn minimal() -> String {
    r#"name = "TST"
title = "Test register"

[[entities]]
name = "Ting"
object_id = "tingId"

[[entities.attributes]]
name = "tingId"
type = "uuid"
required = true

[[entities.attributes]]
name = "navn"
type = "text"
"#
    .to_owned()
}

/// `text` with the first `from` replaced by `to`; panics when `from` is absent, so a mutation
/// that silently does nothing cannot make a test pass.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replacen(from, to, 1)
}

/// A second entity appended to the minimal definition, with `attributes` as TOML text.
fn with_entity(text: &str, name: &str, attributes: &str) -> String {
    format!(
        "{text}\n[[entities]]\nname = \"{name}\"\nobject_id = \"{name}Id\"\n\n\
         [[entities.attributes]]\nname = \"{name}Id\"\ntype = \"uuid\"\nrequired = true\n{attributes}"
    )
}

/// An extra event field appended to `text`.
fn with_event_field(text: &str, name: &str, attribute: &str, value: &str) -> String {
    format!(
        "{text}\n[[event_fields]]\nname = \"{name}\"\nattribute = \"{attribute}\"\nvalue = \"{value}\"\n"
    )
}

fn parse(text: &str) -> Result<Register, DefinitionError> {
    registry::parse_definition(Path::new(FILE), text)
}

/// The message of a refused definition, checked to start with the file name.
fn refusal_in(file: &str, text: &str) -> String {
    match registry::parse_definition(Path::new(file), text) {
        Ok(register) => panic!(
            "accepted register {} although it is invalid:\n{text}",
            register.name
        ),
        Err(error) => {
            let message = error.to_string();
            assert_eq!(error.file, Path::new(file), "{message}");
            assert!(
                message.starts_with(&format!("{file}: ")),
                "message does not name the file: {message}"
            );
            message
        }
    }
}

fn refusal(text: &str) -> String {
    refusal_in(FILE, text)
}

/// Asserts that `message` contains every one of `parts`.
#[track_caller]
fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "expected {part:?} in the message: {message}"
        );
    }
}

fn samples() -> Registry {
    registry::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("registers")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The samples
// ---------------------------------------------------------------------------------------------

#[test]
fn the_three_sample_registers_load_sorted_by_name() {
    let registry = samples();
    assert_eq!(registry.names(), "BBR, CPR, CVR");
    for register in registry.registers() {
        assert!(
            !register.entities.is_empty(),
            "{} has no entities",
            register.name
        );
        assert!(!register.title.is_empty(), "{} has no title", register.name);
        for entity in &register.entities {
            let object_id = entity.object_id_attribute();
            assert!(
                object_id.required,
                "{}.{} object id is optional",
                register.name, entity.name
            );
            assert!(entity.weight >= 1);
        }
    }
    assert!(registry.get("BBR").unwrap().entity("Bygning").is_some());
    assert!(registry.get("CVR").unwrap().entity("CVREnhed").is_some());
    assert!(
        registry.get("bbr").is_none(),
        "register lookup is case-sensitive"
    );
}

#[test]
fn cpr_person_is_protected_and_bbr_is_not() {
    let registry = samples();
    let cpr = registry.get("CPR").unwrap();
    assert!(cpr.entity("Person").unwrap().protected);
    assert!(
        cpr.entities.iter().all(|e| e.protected),
        "every CPR entity inherits protected = true"
    );
    let bbr = registry.get("BBR").unwrap();
    assert!(
        bbr.entities.iter().all(|e| !e.protected),
        "no BBR entity is protected"
    );
}

#[test]
fn cpr_declares_the_new_and_old_municipality_event_fields() {
    let registry = samples();
    let cpr = registry.get("CPR").unwrap();
    let fields: Vec<(&str, &str, EventValue, AttrType)> = cpr
        .event_fields
        .iter()
        .map(|f| (f.name.as_str(), f.attribute.as_str(), f.value, f.ty))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "object_kommunekodenuvaerende",
                "kommunekode",
                EventValue::New,
                AttrType::Text
            ),
            (
                "object_kommunekodetidligere",
                "kommunekode",
                EventValue::Old,
                AttrType::Text
            ),
        ]
    );
    assert!(registry.get("BBR").unwrap().event_fields.is_empty());
    assert!(registry.get("CVR").unwrap().event_fields.is_empty());
}

#[test]
fn storage_names_are_derived_from_the_register_and_entity_names() {
    let registry = samples();
    let bbr = registry.get("BBR").unwrap();
    assert_eq!(bbr.schema_name(), "reg_bbr");
    assert_eq!(bbr.events_table(), "events_bbr");
    assert_eq!(
        bbr.entity("Bygning").unwrap().table_name(bbr),
        "\"reg_bbr\".\"bygning\""
    );
}

// ---------------------------------------------------------------------------------------------
// What a valid definition gives
// ---------------------------------------------------------------------------------------------

#[test]
fn the_minimal_definition_is_accepted_with_the_documented_defaults() {
    let register = parse(&minimal()).unwrap();
    assert_eq!(register.name, "TST");
    assert_eq!(register.description, "");
    let entity = register.entity("Ting").unwrap();
    assert_eq!(entity.object_id_attribute().name, "tingId");
    assert_eq!(entity.object_id_attribute().ty, AttrType::Uuid);
    assert!(!entity.protected, "protected defaults to false");
    assert_eq!(entity.weight, 1, "weight defaults to 1");
    let (index, navn) = entity.attribute("navn").unwrap();
    assert_eq!(index, 1);
    assert_eq!(navn.ty, AttrType::Text);
    assert!(!navn.required && !navn.filterable && !navn.searchable);
    assert!(register.event_fields.is_empty());
}

#[test]
fn searchable_implies_filterable() {
    let text = replaced(
        &minimal(),
        "type = \"text\"",
        "type = \"text\"\nsearchable = true",
    );
    let register = parse(&text).unwrap();
    let (_, navn) = register.entity("Ting").unwrap().attribute("navn").unwrap();
    assert!(navn.searchable && navn.filterable);
}

#[test]
fn an_entity_overrides_the_register_protection() {
    let text = replaced(
        &minimal(),
        "title = \"Test register\"",
        "title = \"Test register\"\nprotected = true",
    );
    let text = replaced(
        &text,
        "object_id = \"tingId\"",
        "object_id = \"tingId\"\nprotected = false",
    );
    let text = with_entity(&text, "Hemmelig", "");
    let register = parse(&text).unwrap();
    assert!(
        !register.entity("Ting").unwrap().protected,
        "the entity's own protected = false wins"
    );
    assert!(
        register.entity("Hemmelig").unwrap().protected,
        "the register's protected = true is the default"
    );
}

#[test]
fn every_attribute_type_of_the_documentation_is_accepted() {
    let mut text = minimal();
    for ty in [
        "text",
        "integer",
        "decimal",
        "boolean",
        "date",
        "timestamp",
        "uuid",
    ] {
        text.push_str(&format!(
            "\n[[entities.attributes]]\nname = \"a_{ty}\"\ntype = \"{ty}\"\n"
        ));
    }
    let register = parse(&text).unwrap();
    let types: Vec<AttrType> = register.entity("Ting").unwrap().attributes[2..]
        .iter()
        .map(|a| a.ty)
        .collect();
    assert_eq!(types, AttrType::ALL);
}

#[test]
fn generator_hints_are_kept() {
    let text = replaced(
        &minimal(),
        "type = \"text\"",
        "type = \"text\"\nvalues = [\"a\", \"b\"]\n\n[[entities.attributes]]\nname = \"aar\"\ntype = \"integer\"\nmin = 1900\nmax = 2025",
    );
    let register = parse(&text).unwrap();
    let entity = register.entity("Ting").unwrap();
    assert_eq!(
        entity.attribute("navn").unwrap().1.hint.values,
        [serde_json::json!("a"), serde_json::json!("b")]
    );
    let aar = &entity.attribute("aar").unwrap().1.hint;
    assert_eq!(aar.min, Some(serde_json::json!(1900)));
    assert_eq!(aar.max, Some(serde_json::json!(2025)));
}

// ---------------------------------------------------------------------------------------------
// Refusals, one per rule
// ---------------------------------------------------------------------------------------------

#[test]
fn a_misspelt_key_is_refused_with_its_line() {
    let text = replaced(&minimal(), "required = true", "requird = true");
    let message = refusal(&text);
    assert_mentions(&message, &["requird", "line 11"]);
}

#[test]
fn an_unknown_register_key_is_refused() {
    let text = replaced(&minimal(), "title = ", "titel = \"x\"\ntitle = ");
    assert_mentions(&refusal(&text), &["titel"]);
}

#[test]
fn a_missing_required_key_is_refused() {
    let text = replaced(&minimal(), "object_id = \"tingId\"\n", "");
    assert_mentions(&refusal(&text), &["object_id"]);
}

#[test]
fn an_unknown_attribute_type_is_refused_with_its_place() {
    let text = replaced(&minimal(), "type = \"text\"", "type = \"string\"");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "entity \"Ting\"",
            "attribute \"navn\"",
            "unknown type \"string\"",
            "text, integer",
        ],
    );
}

#[test]
fn the_status_system_field_is_refused_as_an_attribute_name() {
    let text = replaced(&minimal(), "name = \"navn\"", "name = \"status\"");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &["entity \"Ting\"", "attribute \"status\"", "system field"],
    );
}

#[test]
fn the_datafordeler_row_id_system_field_is_refused_as_an_attribute_name() {
    let text = replaced(
        &minimal(),
        "name = \"navn\"",
        "name = \"datafordelerRowId\"",
    );
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "entity \"Ting\"",
            "attribute \"datafordelerRowId\"",
            "system field",
        ],
    );
}

#[test]
fn system_field_names_are_refused_ignoring_case() {
    for name in [
        "Id",
        "ID",
        "STATUS",
        "RowKey",
        "VirkningFra",
        "datafordelerrowversion",
    ] {
        let text = replaced(&minimal(), "name = \"navn\"", &format!("name = \"{name}\""));
        let message = refusal(&text);
        assert_mentions(
            &message,
            &[
                "entity \"Ting\"",
                &format!("attribute \"{name}\""),
                "system field",
            ],
        );
    }
}

#[test]
fn a_duplicate_attribute_is_refused_ignoring_case() {
    let text = format!(
        "{}\n[[entities.attributes]]\nname = \"NAVN\"\ntype = \"text\"\n",
        minimal()
    );
    let message = refusal(&text);
    assert_mentions(
        &message,
        &["entity \"Ting\"", "attribute \"NAVN\"", "defined twice"],
    );
}

#[test]
fn a_duplicate_entity_is_refused() {
    let text = with_entity(&minimal(), "Ting", "");
    let message = refusal(&text);
    assert_mentions(&message, &["entity \"Ting\"", "defined twice"]);
}

#[test]
fn a_duplicate_entity_is_refused_ignoring_case() {
    let text = with_entity(&minimal(), "TING", "");
    let message = refusal(&text);
    assert_mentions(&message, &["entity \"TING\"", "defined twice"]);
}

#[test]
fn a_non_ascii_attribute_name_is_refused() {
    let text = replaced(&minimal(), "name = \"navn\"", "name = \"opførelsesår\"");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &["entity \"Ting\"", "attribute \"opførelsesår\"", "ASCII"],
    );
}

#[test]
fn an_attribute_name_longer_than_63_characters_is_refused() {
    let long = "a".repeat(64);
    let text = replaced(&minimal(), "name = \"navn\"", &format!("name = \"{long}\""));
    assert_mentions(
        &refusal(&text),
        &["entity \"Ting\"", &format!("attribute \"{long}\""), "1-63"],
    );
    let fits = replaced(
        &minimal(),
        "name = \"navn\"",
        &format!("name = \"{}\"", "a".repeat(63)),
    );
    parse(&fits).unwrap();
}

#[test]
fn an_attribute_name_starting_with_a_digit_is_refused() {
    let text = replaced(&minimal(), "name = \"navn\"", "name = \"1navn\"");
    assert_mentions(
        &refusal(&text),
        &[
            "entity \"Ting\"",
            "attribute \"1navn\"",
            "starting with a letter",
        ],
    );
}

#[test]
fn a_bad_entity_name_is_refused() {
    let text = replaced(&minimal(), "name = \"Ting\"", "name = \"Ting-2\"");
    assert_mentions(&refusal(&text), &["entity \"Ting-2\"", "entity name"]);
}

#[test]
fn an_entity_without_attributes_is_refused() {
    let text = format!(
        "{}\n[[entities]]\nname = \"Tom\"\nobject_id = \"x\"\nattributes = []\n",
        minimal()
    );
    assert_mentions(&refusal(&text), &["entity \"Tom\"", "at least one"]);
}

#[test]
fn an_object_id_that_is_not_an_attribute_is_refused() {
    let text = replaced(
        &minimal(),
        "object_id = \"tingId\"",
        "object_id = \"tingID\"",
    );
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "entity \"Ting\"",
            "object_id \"tingID\"",
            "not one of its attributes",
        ],
    );
}

#[test]
fn an_object_id_that_is_not_required_is_refused() {
    let text = replaced(&minimal(), "required = true", "required = false");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "entity \"Ting\"",
            "object_id attribute \"tingId\"",
            "must be required",
        ],
    );
}

#[test]
fn searchable_on_a_non_text_attribute_is_refused() {
    let text = format!(
        "{}\n[[entities.attributes]]\nname = \"aar\"\ntype = \"integer\"\nsearchable = true\n",
        minimal()
    );
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "entity \"Ting\"",
            "attribute \"aar\"",
            "searchable",
            "not integer",
        ],
    );
}

#[test]
fn a_register_name_not_matching_the_file_name_is_refused() {
    let message = refusal_in("registers/BBR.toml", &minimal());
    assert_mentions(&message, &["register \"TST\"", "TST.toml"]);
}

#[test]
fn a_lowercase_register_name_is_refused() {
    let text = replaced(&minimal(), "name = \"TST\"", "name = \"tst\"");
    let message = refusal_in("registers/tst.toml", &text);
    assert_mentions(&message, &["register name \"tst\"", "A-Z"]);
}

#[test]
fn a_register_name_longer_than_16_characters_is_refused() {
    let long = "R".repeat(17);
    let text = replaced(&minimal(), "name = \"TST\"", &format!("name = \"{long}\""));
    let message = refusal_in(&format!("registers/{long}.toml"), &text);
    assert_mentions(&message, &[&format!("register name \"{long}\""), "1-16"]);
}

#[test]
fn an_event_field_with_an_unknown_attribute_is_refused() {
    let text = with_event_field(&minimal(), "object_kommune", "kommunekode", "new");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "event field \"object_kommune\"",
            "no entity has the attribute \"kommunekode\"",
        ],
    );
}

#[test]
fn an_event_field_whose_attribute_types_differ_across_entities_is_refused() {
    let text = replaced(
        &minimal(),
        "type = \"text\"",
        "type = \"text\"\n\n[[entities.attributes]]\nname = \"kode\"\ntype = \"text\"",
    );
    let text = with_entity(
        &text,
        "Andet",
        "\n[[entities.attributes]]\nname = \"kode\"\ntype = \"integer\"\n",
    );
    let text = with_event_field(&text, "object_kode", "kode", "new");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "event field \"object_kode\"",
            "attribute \"kode\"",
            "text",
            "integer",
        ],
    );
}

#[test]
fn an_event_field_on_an_attribute_some_entities_lack_is_accepted() {
    let text = with_entity(&minimal(), "Andet", "");
    let text = with_event_field(&text, "object_navn", "navn", "old");
    let register = parse(&text).unwrap();
    assert_eq!(register.event_fields.len(), 1);
    assert_eq!(register.event_fields[0].ty, AttrType::Text);
    assert_eq!(register.event_fields[0].value, EventValue::Old);
}

#[test]
fn an_event_field_value_other_than_new_or_old_is_refused() {
    let text = with_event_field(&minimal(), "object_navn", "navn", "current");
    let message = refusal(&text);
    assert_mentions(
        &message,
        &[
            "event field \"object_navn\"",
            "value \"current\"",
            "\"new\" or \"old\"",
        ],
    );
}

#[test]
fn an_event_field_name_not_starting_with_object_is_refused() {
    for name in ["kommunekode", "objekt_navn", "object_", "object_Navn"] {
        let text = with_event_field(&minimal(), name, "navn", "new");
        let message = refusal(&text);
        assert_mentions(&message, &[&format!("event field \"{name}\""), "object_"]);
    }
}

#[test]
fn an_event_field_defined_twice_is_refused() {
    let text = with_event_field(&minimal(), "object_navn", "navn", "new");
    let text = with_event_field(&text, "object_navn", "navn", "old");
    assert_mentions(
        &refusal(&text),
        &["event field \"object_navn\"", "defined twice"],
    );
}

#[test]
fn a_toml_syntax_error_is_refused_with_its_line() {
    let text = replaced(&minimal(), "type = \"text\"", "type = \"text");
    let message = refusal(&text);
    assert_mentions(&message, &["line 15"]);
}

#[test]
fn an_empty_entities_list_is_refused() {
    let text = "name = \"TST\"\ntitle = \"Test register\"\nentities = []\n";
    let message = refusal(text);
    assert_mentions(&message, &["at least one [[entities]]"]);
}

#[test]
fn a_register_without_entities_is_refused() {
    let text = "name = \"TST\"\ntitle = \"Test register\"\n";
    assert_mentions(&refusal(text), &["entities"]);
}

#[test]
fn a_weight_of_zero_is_refused() {
    let text = replaced(
        &minimal(),
        "object_id = \"tingId\"",
        "object_id = \"tingId\"\nweight = 0",
    );
    let message = refusal(&text);
    assert_mentions(&message, &["entity \"Ting\"", "weight must be at least 1"]);
}

#[test]
fn a_negative_weight_is_refused() {
    let text = replaced(
        &minimal(),
        "object_id = \"tingId\"",
        "object_id = \"tingId\"\nweight = -1",
    );
    assert_mentions(&refusal(&text), &["weight"]);
}

// ---------------------------------------------------------------------------------------------
// Loading a directory
// ---------------------------------------------------------------------------------------------

#[test]
fn a_directory_without_definitions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "not a definition").unwrap();
    let error = registry::load_dir(dir.path()).unwrap_err();
    assert_eq!(error.file, dir.path());
    assert_mentions(&error.to_string(), &["no register definitions"]);
}

#[test]
fn a_bad_file_in_a_directory_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("TST.toml"), minimal()).unwrap();
    let bad = replaced(
        &replaced(&minimal(), "name = \"TST\"", "name = \"BAD\""),
        "type = \"text\"",
        "type = \"txt\"",
    );
    std::fs::write(dir.path().join("BAD.toml"), bad).unwrap();
    let error = registry::load_dir(dir.path()).unwrap_err();
    assert_eq!(error.file, dir.path().join("BAD.toml"));
    assert_mentions(
        &error.to_string(),
        &["BAD.toml: ", "attribute \"navn\"", "unknown type \"txt\""],
    );
}

#[test]
fn a_directory_of_valid_definitions_loads_every_register() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("TST.toml"), minimal()).unwrap();
    std::fs::write(
        dir.path().join("ABC.toml"),
        replaced(&minimal(), "name = \"TST\"", "name = \"ABC\""),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let registry = registry::load_dir(dir.path()).unwrap();
    assert_eq!(registry.names(), "ABC, TST");
}

#[test]
fn an_entity_name_with_a_double_underscore_or_over_50_characters_is_refused() {
    for name in ["Byg__ning".to_owned(), "B".repeat(51)] {
        let text = minimal().replace("name = \"Ting\"", &format!("name = \"{name}\""));
        let error =
            fordeler::registry::parse_definition(std::path::Path::new("registers/TST.toml"), &text)
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("at most 50 characters and must not contain \"__\""),
            "{error}"
        );
    }
}
