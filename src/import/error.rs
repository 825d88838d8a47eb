//! Why an import stopped, with the exit code scripts can rely on.

use crate::package::PackageError;

/// Why a package was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The package is malformed or breaks the register definition; nothing of it was applied.
    #[error(transparent)]
    Invalid(#[from] PackageError),
    /// The package does not follow the last imported one.
    #[error("{file}: expected package {expected} of {register}, got {got}")]
    Gap {
        /// The package file.
        file: String,
        /// Register code.
        register: String,
        /// The sequence number that would be next.
        expected: i64,
        /// The sequence number in the file.
        got: i64,
    },
    /// A package with this sequence number was imported with other content.
    #[error(
        "{file}: package {sequence} of {register} was already imported with other content \
         (sha256 {stored}, this file {found}); refusing to import it again"
    )]
    Conflict {
        /// The package file.
        file: String,
        /// Register code.
        register: String,
        /// The sequence number.
        sequence: i64,
        /// Checksum of the imported package.
        stored: String,
        /// Checksum of this file.
        found: String,
    },
    /// Database or I/O failure; nothing of the package was applied.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Internal(e.into())
    }
}

impl ImportError {
    /// The process exit code for this error (see README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            ImportError::Internal(_) => 1,
            ImportError::Invalid(_) => 3,
            ImportError::Gap { .. } => 4,
            ImportError::Conflict { .. } => 5,
        }
    }

    /// A short machine-readable kind: `invalid`, `gap`, `conflict`, `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            ImportError::Internal(_) => "internal",
            ImportError::Invalid(_) => "invalid",
            ImportError::Gap { .. } => "gap",
            ImportError::Conflict { .. } => "conflict",
        }
    }
}
