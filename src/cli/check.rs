//! `fordeler check`: validate packages offline, exactly as `import` would, without a database.
//!
//! Register operators run it before delivering a package. `--copy-out` also writes the rows as
//! COPY text for one plain table (and `<FILE>.sql`, its `CREATE TABLE`): the import
//! benchmark's raw-COPY reference.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::package::copy::ReferenceEncoder;
use crate::package::{Op, PackageError, RowParser};
use crate::registry::{self, Registry};

/// Options of `fordeler check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 every package is valid, 1 I/O error, 3 invalid package.")]
pub struct Opts {
    /// Package files (.ndjson or .ndjson.gz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the rows of the (single) package as COPY text to this file, and a CREATE TABLE for
    /// them to <FILE>.sql: every entity's attributes side by side in one plain table (the
    /// import benchmark's reference).
    #[arg(long)]
    copy_out: Option<PathBuf>,
    /// Directory of the register definitions (*.toml).
    #[arg(long, env = "FORDELER_REGISTERS", default_value = "registers")]
    registers: PathBuf,
}

/// Checks every file; returns the exit code.
pub fn run(opts: Opts) -> i32 {
    let registry = match registry::load_dir(&opts.registers) {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for file in &opts.files {
        match check(&registry, file, opts.copy_out.as_deref()) {
            Ok(()) => {}
            Err(Failure::Invalid(message)) => {
                eprintln!("error: {message}");
                return 3;
            }
            Err(Failure::Io(e)) => {
                eprintln!("error: {e:#}");
                return 1;
            }
        }
    }
    0
}

enum Failure {
    Invalid(String),
    Io(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Io(e)
    }
}

fn check(registry: &Registry, file: &Path, copy_out: Option<&Path>) -> Result<(), Failure> {
    let timer = Instant::now();
    let invalid = |e: PackageError| Failure::Invalid(e.to_string());
    let (mut reader, header, register) = crate::package::open(registry, file).map_err(invalid)?;
    let mut out = match copy_out {
        Some(path) => {
            let ddl = format!(
                "CREATE TABLE copy_reference ({});\n",
                ReferenceEncoder::columns(register).join(", ")
            );
            std::fs::write(path.with_extension("sql"), ddl).context("cannot write the DDL file")?;
            let file = std::fs::File::create(path).context("cannot create the COPY file")?;
            Some(std::io::BufWriter::new(file))
        }
        None => None,
    };
    let parser = RowParser::new(register);
    let encoder = ReferenceEncoder::new(register);
    let (mut rows, mut deletes) = (0u64, 0u64);
    let mut per_entity = vec![0u64; register.entities.len()];
    let mut buf = Vec::with_capacity(64 * 1024);
    let name = reader.file().to_owned();
    while let Some((line_no, line)) = reader.next_line().map_err(invalid)? {
        let row = parser.parse(&name, line_no, line).map_err(invalid)?;
        if out.is_some() {
            encoder.write(line_no, &row, uuid::Uuid::now_v7(), &mut buf);
        }
        rows += 1;
        per_entity[row.entity] += 1;
        deletes += u64::from(row.op() == Op::Delete);
        if let Some(out) = out.as_mut().filter(|_| buf.len() > 60 * 1024) {
            out.write_all(&buf).context("cannot write the COPY file")?;
            buf.clear();
        }
    }
    if let Some(mut out) = out {
        out.write_all(&buf)
            .and_then(|()| out.flush())
            .context("cannot write the COPY file")?;
    }
    if let Some(expected) = header.rows.filter(|n| *n != rows) {
        return Err(invalid(PackageError::row_count(&name, expected, rows)));
    }
    let sha256 = reader.finish().map_err(invalid)?;
    let entities: Vec<String> = register
        .entities
        .iter()
        .zip(&per_entity)
        .filter(|(_, n)| **n > 0)
        .map(|(e, n)| format!("{} {n}", e.name))
        .collect();
    let seconds = timer.elapsed().as_secs_f64();
    println!(
        "{name}: valid {} package {}: {rows} rows ({deletes} deletes; {}), sha256 {sha256}, checked in {seconds:.1}s ({:.0} rows/s)",
        header.register,
        header.sequence,
        entities.join(", "),
        rows as f64 / seconds.max(1e-9)
    );
    Ok(())
}
