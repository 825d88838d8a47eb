//! Register definitions: the data that describes a register's entities and attributes.
//!
//! Definitions are loaded from TOML files (see `docs/register-definitions.md`), validated once,
//! and turned into the domain types below; the rest of the code trusts them. Storage names
//! (`reg_bbr.bygning`, `events_bbr`) are derived here so that every layer agrees on them.

mod load;

pub use load::{DefinitionError, load_dir, parse_definition};

use std::fmt;

/// All registers known to this process, sorted by name.
#[derive(Debug, Clone)]
pub struct Registry {
    registers: Vec<Register>,
}

impl Registry {
    /// Builds a registry from validated registers (sorted by name here).
    pub fn new(mut registers: Vec<Register>) -> Self {
        registers.sort_by(|a, b| a.name.cmp(&b.name));
        Self { registers }
    }

    /// The register called `name` (exact, case-sensitive: `BBR`).
    pub fn get(&self, name: &str) -> Option<&Register> {
        self.registers.iter().find(|r| r.name == name)
    }

    /// All registers, sorted by name.
    pub fn registers(&self) -> &[Register] {
        &self.registers
    }

    /// The register names, comma-separated, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.registers.iter().map(|r| r.name.as_str()).collect();
        names.join(", ")
    }
}

/// One register (BBR, CVR, CPR...).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Register {
    /// Register code, the GraphQL prefix: `BBR`.
    pub name: String,
    /// Human name.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Entities, in definition order (which is also the order a batch of a package's events is
    /// numbered in).
    pub entities: Vec<Entity>,
    /// Register-specific extra event fields, such as CPR's `object_kommunekodenuvaerende`.
    pub event_fields: Vec<EventField>,
}

impl Register {
    /// The entity called `name` (exact, as packages and events spell it).
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// PostgreSQL schema holding this register's entity tables: `reg_bbr`.
    pub fn schema_name(&self) -> String {
        format!("reg_{}", self.name.to_ascii_lowercase())
    }

    /// The events partition of this register: `events_bbr`.
    pub fn events_table(&self) -> String {
        format!("events_{}", self.name.to_ascii_lowercase())
    }

    /// The entity names, comma-separated, for error messages.
    pub fn entity_names(&self) -> String {
        let names: Vec<&str> = self.entities.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }
}

/// One entity of a register (a table of bitemporal rows).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entity {
    /// Entity name as Datafordeler spells it: `Bygning`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Index into `attributes` of the register's object id.
    pub object_id: usize,
    /// Whether reading it needs a grant.
    pub protected: bool,
    /// Generator hint: relative share of new objects.
    pub weight: u32,
    /// Typed attributes, in definition order.
    pub attributes: Vec<Attribute>,
}

impl Entity {
    /// The object-id attribute.
    pub fn object_id_attribute(&self) -> &Attribute {
        &self.attributes[self.object_id]
    }

    /// The attribute called `name`, with its index.
    pub fn attribute(&self, name: &str) -> Option<(usize, &Attribute)> {
        self.attributes
            .iter()
            .enumerate()
            .find(|(_, a)| a.name == name)
    }

    /// Fully qualified, quoted table name: `reg_bbr."bygning"`.
    pub fn table_name(&self, register: &Register) -> String {
        format!(
            "{}.{}",
            quote_ident(&register.schema_name()),
            quote_ident(&self.name.to_ascii_lowercase())
        )
    }
}

/// One typed attribute.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attribute {
    /// Name, as the package and the GraphQL schema spell it.
    pub name: String,
    /// Value type.
    pub ty: AttrType,
    /// A row without a value is refused.
    pub required: bool,
    /// Filterable in GraphQL `where`.
    pub filterable: bool,
    /// Text only: `startsWith` is offered.
    pub searchable: bool,
    /// Free text.
    pub description: String,
    /// Generator hints.
    pub hint: GenHint,
}

/// Generator hints for an attribute's values.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenHint {
    /// Values to choose from (rendered as strings for text, integers for integer).
    pub values: Vec<serde_json::Value>,
    /// Lower bound: a number, or a `YYYY-MM-DD` date.
    pub min: Option<serde_json::Value>,
    /// Upper bound: a number, or a `YYYY-MM-DD` date.
    pub max: Option<serde_json::Value>,
}

/// The value types an attribute can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer.
    Integer,
    /// Exact decimal number.
    Decimal,
    /// true/false.
    Boolean,
    /// Calendar date, `YYYY-MM-DD`.
    Date,
    /// RFC 3339 timestamp, microsecond precision.
    Timestamp,
    /// UUID.
    Uuid,
}

impl AttrType {
    /// All types, for error messages.
    pub const ALL: [AttrType; 7] = [
        AttrType::Text,
        AttrType::Integer,
        AttrType::Decimal,
        AttrType::Boolean,
        AttrType::Date,
        AttrType::Timestamp,
        AttrType::Uuid,
    ];

    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::Text => "text",
            AttrType::Integer => "integer",
            AttrType::Decimal => "decimal",
            AttrType::Boolean => "boolean",
            AttrType::Date => "date",
            AttrType::Timestamp => "timestamp",
            AttrType::Uuid => "uuid",
        }
    }

    /// The PostgreSQL column type storing it.
    pub fn sql_type(self) -> &'static str {
        match self {
            AttrType::Text => "text",
            AttrType::Integer => "bigint",
            AttrType::Decimal => "numeric",
            AttrType::Boolean => "boolean",
            AttrType::Date => "date",
            AttrType::Timestamp => "timestamp with time zone",
            AttrType::Uuid => "uuid",
        }
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A register-specific extra field on events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventField {
    /// Field name on events: `object_kommunekodenuvaerende`.
    pub name: String,
    /// The attribute whose value it carries.
    pub attribute: String,
    /// Its type (the attribute's).
    pub ty: AttrType,
    /// Value after or before the change.
    pub value: EventValue,
    /// Filterable on `<REG>_Events`.
    pub filterable: bool,
    /// Free text.
    pub description: String,
}

/// Which value of the attribute an extra event field carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventValue {
    /// After the change (for `d`, the deleted row's last value).
    New,
    /// Before the change (`null` for `i`).
    Old,
}

/// Quotes a PostgreSQL identifier. Names are validated at load, so this only guards the syntax.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
