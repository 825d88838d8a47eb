//! The package format (`docs/package-format.md`): NDJSON, optionally gzip-compressed; a header
//! line, then one line per row. Read as a stream: memory stays flat whatever the package size.

pub mod copy;
mod reader;
mod rows;

pub use reader::PackageReader;
pub use rows::{Op, Period, Row, RowParser, Upsert, Value, format_micros};

use std::fmt;

use chrono::{DateTime, Utc};

/// The `format` value of the header line.
pub const FORMAT: &str = "fordeler-package/1";

/// The first line of a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Register code: `BBR`.
    pub register: String,
    /// The package's sequence number in its register: 1, 2, 3...
    pub sequence: i64,
    /// When the register created the package.
    pub created: DateTime<Utc>,
    /// Number of row lines that follow; when given, a truncated package is detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// A package that cannot be imported, with the file, line and field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageError {
    /// The package file.
    pub file: String,
    /// 1-based line number (0: the file as a whole).
    pub line: u64,
    /// The field at fault (`attributes.kommunekode`), when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field \"{field}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PackageError {}

impl PackageError {
    /// The header announced `expected` rows but the file has `found`.
    pub fn row_count(file: &str, expected: u64, found: u64) -> Self {
        PackageError {
            file: file.to_owned(),
            line: 0,
            field: Some("rows".into()),
            message: format!(
                "the header announces {expected} rows but the file has {found} (truncated?)"
            ),
        }
    }
}

/// Opens a package, reads its header and finds its register in `registry`.
pub fn open<'r>(
    registry: &'r crate::registry::Registry,
    path: &std::path::Path,
) -> Result<(PackageReader, Header, &'r crate::registry::Register), PackageError> {
    let mut reader = PackageReader::open(path)?;
    let header = reader.read_header()?;
    let Some(register) = registry.get(&header.register) else {
        let message = format!(
            "unknown register \"{}\" (known: {})",
            header.register,
            registry.names()
        );
        return Err(reader.error(Some("register"), message));
    };
    Ok((reader, header, register))
}
