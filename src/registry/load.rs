//! Parsing and validating register definition files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AttrType, Attribute, Entity, EventField, EventValue, GenHint, Register, Registry};

/// A definition file that cannot be used, with the file and the place in it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DefinitionError {
    /// The definition file.
    pub file: PathBuf,
    /// What is wrong, and where in the file.
    pub message: String,
}

/// Names an attribute may not take: they are the system fields of every row.
const RESERVED: [&str; 11] = [
    "datafordelerRowId",
    "datafordelerRowVersion",
    "datafordelerOpdateringstid",
    "datafordelerRegisterImportSequenceNumber",
    "registreringFra",
    "registreringTil",
    "virkningFra",
    "virkningTil",
    "status",
    "id",
    "rowkey",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    protected: bool,
    entities: Vec<RawEntity>,
    #[serde(default)]
    event_fields: Vec<RawEventField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    #[serde(default)]
    description: String,
    object_id: String,
    protected: Option<bool>,
    weight: Option<u32>,
    attributes: Vec<RawAttribute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    filterable: bool,
    #[serde(default)]
    searchable: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    values: Vec<toml::Value>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventField {
    name: String,
    attribute: String,
    value: String,
    #[serde(default)]
    filterable: bool,
    #[serde(default)]
    description: String,
}

/// Loads every `*.toml` file of `dir` as a register definition.
pub fn load_dir(dir: &Path) -> Result<Registry, DefinitionError> {
    let error = |message: String| DefinitionError {
        file: dir.to_path_buf(),
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| error(format!("cannot read the register directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(error("no register definitions (*.toml) found".into()));
    }
    let mut registers = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| DefinitionError {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        registers.push(parse_definition(&file, &text)?);
    }
    Ok(Registry::new(registers))
}

/// Parses and validates one definition; `file` is used for messages and the name check.
pub fn parse_definition(file: &Path, text: &str) -> Result<Register, DefinitionError> {
    let error = |message: String| DefinitionError {
        file: file.to_path_buf(),
        message,
    };
    let raw: RawRegister = toml::from_str(text).map_err(|e| error(e.to_string()))?;
    let register = validate_register(raw).map_err(error)?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if !stem.is_empty() && stem != register.name {
        return Err(error(format!(
            "register \"{}\" must be defined in a file named {}.toml",
            register.name, register.name
        )));
    }
    Ok(register)
}

fn validate_register(raw: RawRegister) -> Result<Register, String> {
    check_register_name(&raw.name)?;
    if raw.entities.is_empty() {
        return Err("a register needs at least one [[entities]]".into());
    }
    let mut seen = HashSet::new();
    let mut entities = Vec::with_capacity(raw.entities.len());
    for raw_entity in raw.entities {
        let name = raw_entity.name.clone();
        let entity = validate_entity(raw_entity, raw.protected)
            .map_err(|m| format!("entity \"{name}\": {m}"))?;
        if !seen.insert(entity.name.to_ascii_lowercase()) {
            return Err(format!(
                "entity \"{name}\" is defined twice (names are compared ignoring case)"
            ));
        }
        entities.push(entity);
    }
    let mut event_fields = Vec::with_capacity(raw.event_fields.len());
    let mut seen = HashSet::new();
    for raw_field in raw.event_fields {
        let name = raw_field.name.clone();
        let field = validate_event_field(raw_field, &entities)
            .map_err(|m| format!("event field \"{name}\": {m}"))?;
        if !seen.insert(field.name.clone()) {
            return Err(format!("event field \"{name}\" is defined twice"));
        }
        event_fields.push(field);
    }
    Ok(Register {
        name: raw.name,
        title: raw.title,
        description: raw.description,
        entities,
        event_fields,
    })
}

fn check_register_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && name.len() <= 16;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "register name \"{name}\" must be 1-16 characters of A-Z and 0-9, starting with a letter"
        ))
    }
}

fn check_identifier(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} name \"{name}\" must be 1-63 ASCII letters, digits or _, starting with a letter"
        ))
    }
}

fn validate_entity(raw: RawEntity, register_protected: bool) -> Result<Entity, String> {
    check_identifier(&raw.name, "entity")?;
    // Its table's indexes are named <entity>__rowkey and the like: keep those names unique
    // and within PostgreSQL's 63 bytes.
    if raw.name.len() > 50 || raw.name.contains("__") {
        return Err(format!(
            "entity name \"{}\" must be at most 50 characters and must not contain \"__\"",
            raw.name
        ));
    }
    if raw.attributes.is_empty() {
        return Err("an entity needs at least one [[entities.attributes]]".into());
    }
    let mut seen = HashSet::new();
    let mut attributes = Vec::with_capacity(raw.attributes.len());
    for raw_attribute in raw.attributes {
        let name = raw_attribute.name.clone();
        let attribute =
            validate_attribute(raw_attribute).map_err(|m| format!("attribute \"{name}\": {m}"))?;
        if !seen.insert(attribute.name.to_ascii_lowercase()) {
            return Err(format!(
                "attribute \"{name}\" is defined twice (names are compared ignoring case)"
            ));
        }
        attributes.push(attribute);
    }
    let object_id = attributes
        .iter()
        .position(|a| a.name == raw.object_id)
        .ok_or_else(|| {
            format!(
                "object_id \"{}\" is not one of its attributes",
                raw.object_id
            )
        })?;
    if !attributes[object_id].required {
        return Err(format!(
            "object_id attribute \"{}\" must be required",
            raw.object_id
        ));
    }
    if !matches!(
        attributes[object_id].ty,
        AttrType::Text | AttrType::Integer | AttrType::Uuid
    ) {
        return Err(format!(
            "object_id attribute \"{}\" must be text, integer or uuid, not {}",
            raw.object_id, attributes[object_id].ty
        ));
    }
    let weight = raw.weight.unwrap_or(1);
    if weight == 0 {
        return Err("weight must be at least 1".into());
    }
    Ok(Entity {
        name: raw.name,
        description: raw.description,
        object_id,
        protected: raw.protected.unwrap_or(register_protected),
        weight,
        attributes,
    })
}

fn parse_type(name: &str) -> Result<AttrType, String> {
    AttrType::ALL
        .into_iter()
        .find(|t| t.as_str() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = AttrType::ALL.iter().map(|t| t.as_str()).collect();
            format!(
                "unknown type \"{name}\" (expected one of {})",
                known.join(", ")
            )
        })
}

fn validate_attribute(raw: RawAttribute) -> Result<Attribute, String> {
    check_identifier(&raw.name, "attribute")?;
    if let Some(reserved) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(&raw.name)) {
        return Err(format!(
            "\"{reserved}\" is a system field of every row; choose another name"
        ));
    }
    let ty = parse_type(&raw.ty)?;
    if raw.searchable && ty != AttrType::Text {
        return Err(format!("searchable (startsWith) applies to text, not {ty}"));
    }
    let hint = GenHint {
        values: raw
            .values
            .into_iter()
            .map(toml_to_json)
            .collect::<Result<_, _>>()?,
        min: raw.min.map(toml_to_json).transpose()?,
        max: raw.max.map(toml_to_json).transpose()?,
    };
    check_hint(ty, &hint)?;
    Ok(Attribute {
        name: raw.name,
        ty,
        required: raw.required,
        filterable: raw.filterable || raw.searchable,
        searchable: raw.searchable,
        description: raw.description,
        hint,
    })
}

/// Generator hints must be values of the attribute's type, or generated rows would be refused.
fn check_hint(ty: AttrType, hint: &GenHint) -> Result<(), String> {
    let is_date = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
    };
    let value_ok = |v: &serde_json::Value| match ty {
        AttrType::Text => v.is_string(),
        AttrType::Integer => v.is_i64(),
        AttrType::Decimal => v.is_number(),
        AttrType::Boolean => v.is_boolean(),
        AttrType::Date => is_date(v),
        AttrType::Timestamp => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        AttrType::Uuid => v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
    };
    if let Some(bad) = hint.values.iter().find(|v| !value_ok(v)) {
        return Err(format!("values: {bad} is not a {ty} value"));
    }
    let bound_ok = |v: &serde_json::Value| match ty {
        AttrType::Integer => v.is_i64(),
        AttrType::Decimal => v.is_number(),
        AttrType::Date => is_date(v),
        _ => false,
    };
    for (name, bound) in [("min", &hint.min), ("max", &hint.max)] {
        if let Some(bad) = bound.as_ref().filter(|v| !bound_ok(v)) {
            return Err(format!(
                "{name}: {bad} is not a bound for {ty} (numbers for integer and decimal, \"YYYY-MM-DD\" for date)"
            ));
        }
    }
    Ok(())
}

fn toml_to_json(value: toml::Value) -> Result<serde_json::Value, String> {
    match value {
        toml::Value::String(s) => Ok(s.into()),
        toml::Value::Integer(i) => Ok(i.into()),
        toml::Value::Float(f) => Ok(f.into()),
        toml::Value::Boolean(b) => Ok(b.into()),
        other => Err(format!(
            "generator hint {other} must be a string, number or boolean"
        )),
    }
}

fn validate_event_field(raw: RawEventField, entities: &[Entity]) -> Result<EventField, String> {
    let suffix = raw.name.strip_prefix("object_").unwrap_or_default();
    let valid = !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err("the name must be object_ followed by a-z, 0-9 or _".into());
    }
    let value = match raw.value.as_str() {
        "new" => EventValue::New,
        "old" => EventValue::Old,
        other => return Err(format!("value \"{other}\" must be \"new\" or \"old\"")),
    };
    let mut types = entities
        .iter()
        .filter_map(|e| e.attribute(&raw.attribute))
        .map(|(_, a)| a.ty);
    let ty = types
        .next()
        .ok_or_else(|| format!("no entity has the attribute \"{}\"", raw.attribute))?;
    if let Some(other) = types.find(|t| *t != ty) {
        return Err(format!(
            "attribute \"{}\" is {ty} in one entity and {other} in another",
            raw.attribute
        ));
    }
    Ok(EventField {
        name: raw.name,
        attribute: raw.attribute,
        ty,
        value,
        filterable: raw.filterable,
        description: raw.description,
    })
}
