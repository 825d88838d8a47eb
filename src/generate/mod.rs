//! Deterministic synthetic packages for any register definition.
//!
//! The history is a pure function of (register, seed, rows per package): package `p` holds
//! exactly `rows` rows, made of
//! - bitemporal corrections of every tenth object created in package `p-1`: the current
//!   registration is closed (`u`: `registreringTil` set) and two replacement registrations are
//!   inserted (`i`: the old values up to the change, the new values from it), 3 rows each;
//! - identical re-deliveries of one in twenty objects of package `p-1` (no event);
//! - deletes of one in twenty objects created in package `p-2`;
//! - new objects for the rest, spread over the entities by their `weight`.
//!
//! Every object is touched at most once after its creation, so package `p` can be written
//! without generating the packages before it (`--start-seq`): only the per-package counts are
//! recomputed, which is integer arithmetic.

mod values;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::package::{FORMAT, Header};
use crate::registry::{Entity, Register};
use values::{Hasher, attribute_value};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of packages.
    pub packages: u64,
    /// Rows per package (at least 10).
    pub rows: u64,
    /// Seed of the history.
    pub seed: u64,
    /// Sequence number of the first package written.
    pub start_seq: u64,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Gzip the files (`.ndjson.gz`) or not (`.ndjson`).
    pub gzip: bool,
}

/// The per-package counts of a history.
struct Plan {
    rows: u64,
    /// new_objects[p] for p >= 1 (index 0 unused).
    new_objects: Vec<u64>,
    /// first_object[p]: global number of the first object created in package p.
    first_object: Vec<u64>,
}

/// How many of 0..n are congruent to r modulo m.
fn count_mod(n: u64, m: u64, r: u64) -> u64 {
    if n > r { (n - 1 - r) / m + 1 } else { 0 }
}

impl Plan {
    fn new(rows: u64, last: u64) -> Self {
        let mut new_objects = vec![0, rows];
        let mut first_object = vec![0, 0];
        for p in 2..=last as usize {
            let fixed = 3 * count_mod(new_objects[p - 1], 10, 0)
                + count_mod(new_objects[p - 1], 20, 3)
                + count_mod(new_objects[p - 2], 20, 7);
            first_object.push(first_object[p - 1] + new_objects[p - 1]);
            new_objects.push(rows - fixed);
        }
        Self {
            rows,
            new_objects,
            first_object,
        }
    }
}

/// Writes packages `start_seq..start_seq+packages-1` of the register's history into `out`, named
/// `<REG>-<seq, 8 digits>.ndjson[.gz]` so that a shell glob lists them in sequence order.
pub fn generate(register: &Register, options: &GenerateOptions) -> anyhow::Result<Vec<PathBuf>> {
    if options.rows < 10 {
        bail!("--rows must be at least 10 (each package mixes inserts, corrections and deletes)");
    }
    if options.packages < 1 {
        bail!("--packages must be at least 1");
    }
    if options.start_seq < 1 {
        bail!("--start-seq must be 1 or more");
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let last = options.start_seq + options.packages.saturating_sub(1);
    let plan = Plan::new(options.rows, last);
    let generator = Generator {
        register,
        seed: options.seed,
        plan: &plan,
    };
    let mut written = Vec::new();
    for seq in options.start_seq..=last {
        let extension = if options.gzip { "ndjson.gz" } else { "ndjson" };
        let path = options
            .out
            .join(format!("{}-{seq:08}.{extension}", register.name));
        generator.write_package(seq, &path, options.gzip)?;
        written.push(path);
    }
    Ok(written)
}

struct Generator<'a> {
    register: &'a Register,
    seed: u64,
    plan: &'a Plan,
}

/// When package `p` was created: one hour apart from 2026-01-01.
fn package_time(p: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::hours(p as i64 - 1)
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Generator<'_> {
    fn write_package(&self, seq: u64, path: &Path, gzip: bool) -> anyhow::Result<()> {
        let tmp = path.with_extension("partial");
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out: Box<dyn Write> = if gzip {
            Box::new(BufWriter::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            )))
        } else {
            Box::new(BufWriter::new(file))
        };
        let header = Header {
            format: FORMAT.into(),
            register: self.register.name.clone(),
            sequence: seq as i64,
            created: package_time(seq),
            rows: Some(self.plan.rows),
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        self.write_rows(seq, &mut out)?;
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn write_rows(&self, p: u64, out: &mut dyn Write) -> anyhow::Result<()> {
        let p_us = p as usize;
        if p >= 2 {
            let (first, count) = (
                self.plan.first_object[p_us - 1],
                self.plan.new_objects[p_us - 1],
            );
            for i in (0..count).filter(|i| i % 10 == 0) {
                self.write_correction(first + i, p - 1, p, out)?;
            }
            for i in (0..count).filter(|i| i % 20 == 3) {
                self.write_row(out, &self.original(first + i, p - 1))?;
            }
        }
        if p >= 3 {
            let (first, count) = (
                self.plan.first_object[p_us - 2],
                self.plan.new_objects[p_us - 2],
            );
            for i in (0..count).filter(|i| i % 20 == 7) {
                let o = first + i;
                let entity = self.entity_of(o);
                let row = serde_json::json!({"entity": entity.name, "op": "delete", "key": self.key(o, 0)});
                self.write_row(out, &row)?;
            }
        }
        let first = self.plan.first_object[p_us];
        for o in first..first + self.plan.new_objects[p_us] {
            self.write_row(out, &self.original(o, p))?;
        }
        Ok(())
    }

    fn write_row(&self, out: &mut dyn Write, row: &Value) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
        Ok(())
    }

    fn entity_of(&self, object: u64) -> &Entity {
        let total: u64 = self
            .register
            .entities
            .iter()
            .map(|e| u64::from(e.weight))
            .sum();
        let mut pick = Hasher::new(self.seed).add(object).add(0xE).finish() % total;
        for entity in &self.register.entities {
            if pick < u64::from(entity.weight) {
                return entity;
            }
            pick -= u64::from(entity.weight);
        }
        &self.register.entities[0]
    }

    /// The register's row identity of registration `r` of `object`: a UUID.
    fn key(&self, object: u64, r: u64) -> String {
        let h = Hasher::new(self.seed).add(object).add(r).add(0x4B);
        uuid::Uuid::from_u64_pair(h.clone().add(1).finish(), h.add(2).finish()).to_string()
    }

    /// Valid-time start of the object's first registration: up to ten years before creation.
    fn virkning_start(&self, object: u64, created_in: u64) -> DateTime<Utc> {
        let days = Hasher::new(self.seed).add(object).add(0x56).finish() % 3650 + 1;
        package_time(created_in) - Duration::days(days as i64)
    }

    fn attributes(&self, entity: &Entity, object: u64, version: u64) -> Value {
        let mut map = Map::new();
        for (k, attribute) in entity.attributes.iter().enumerate() {
            let is_object = k == entity.object_id;
            let mut value = attribute_value(self.seed, attribute, is_object, object, k as u64, 0);
            if version > 0 && self.changes(entity, object, k) {
                // A correction changes the value: try a few versions until one differs.
                let original = value.clone();
                for v in 1..8 {
                    value = attribute_value(self.seed, attribute, is_object, object, k as u64, v);
                    if value != original {
                        break;
                    }
                }
            }
            if !value.is_null() {
                map.insert(attribute.name.clone(), value);
            }
        }
        Value::Object(map)
    }

    /// Whether a correction of `object` changes attribute `k` (never the object id; always at
    /// least one attribute when the entity has another).
    fn changes(&self, entity: &Entity, object: u64, k: usize) -> bool {
        if k == entity.object_id {
            return false;
        }
        let h = Hasher::new(self.seed).add(object).add(0xC4);
        // One attribute other than the object id always changes.
        let others = entity.attributes.len() - 1;
        let pick = if others == 0 {
            0
        } else {
            h.clone().finish() as usize % others
        };
        let always = if pick >= entity.object_id {
            pick + 1
        } else {
            pick
        };
        k == always || h.add(k as u64).finish().is_multiple_of(3)
    }

    fn original(&self, object: u64, created_in: u64) -> Value {
        let entity = self.entity_of(object);
        serde_json::json!({
            "entity": entity.name,
            "op": "upsert",
            "key": self.key(object, 0),
            "registreringFra": ts(package_time(created_in)),
            "virkningFra": ts(self.virkning_start(object, created_in)),
            "status": "gældende",
            "attributes": self.attributes(entity, object, 0),
        })
    }

    /// Closes the object's registration and inserts the two registrations that replace it.
    fn write_correction(
        &self,
        object: u64,
        created_in: u64,
        p: u64,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let entity = self.entity_of(object);
        let now = package_time(p);
        let change = now - Duration::minutes(30);
        let mut closed = self.original(object, created_in);
        closed["registreringTil"] = ts(now);
        self.write_row(out, &closed)?;
        let before = serde_json::json!({
            "entity": entity.name,
            "op": "upsert",
            "key": self.key(object, 1),
            "registreringFra": ts(now),
            "virkningFra": ts(self.virkning_start(object, created_in)),
            "virkningTil": ts(change),
            "status": "gældende",
            "attributes": self.attributes(entity, object, 0),
        });
        self.write_row(out, &before)?;
        let after = serde_json::json!({
            "entity": entity.name,
            "op": "upsert",
            "key": self.key(object, 2),
            "registreringFra": ts(now),
            "virkningFra": ts(change),
            "status": "gældende",
            "attributes": self.attributes(entity, object, 1),
        });
        self.write_row(out, &after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_has_exactly_the_requested_rows() {
        for rows in [10, 11, 37, 1000] {
            let plan = Plan::new(rows, 30);
            for p in 2..=30usize {
                let fixed = 3 * count_mod(plan.new_objects[p - 1], 10, 0)
                    + count_mod(plan.new_objects[p - 1], 20, 3)
                    + if p >= 3 {
                        count_mod(plan.new_objects[p - 2], 20, 7)
                    } else {
                        0
                    };
                assert_eq!(
                    plan.new_objects[p] + fixed,
                    rows,
                    "rows {rows}, package {p}"
                );
            }
        }
    }

    #[test]
    fn count_mod_counts_residues() {
        assert_eq!(count_mod(0, 10, 0), 0);
        assert_eq!(count_mod(1, 10, 0), 1);
        assert_eq!(count_mod(10, 10, 0), 1);
        assert_eq!(count_mod(11, 10, 0), 2);
        assert_eq!(count_mod(3, 20, 3), 0);
        assert_eq!(count_mod(4, 20, 3), 1);
    }
}
