//! Deterministic attribute values: a stable hash (splitmix64), and values shaped by the
//! definition's hints. No external RNG, so the history never changes with a crate upgrade.

use chrono::{Duration, NaiveDate};
use serde_json::Value;

use crate::registry::{AttrType, Attribute};

/// A splitmix64-based hash of a sequence of integers.
#[derive(Clone)]
pub struct Hasher(u64);

impl Hasher {
    /// Starts a hash from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(splitmix(seed ^ 0x6A09_E667_F3BC_C908))
    }

    /// Mixes in one more integer.
    pub fn add(self, value: u64) -> Self {
        Self(splitmix(self.0 ^ value.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    /// The hash.
    pub fn finish(self) -> u64 {
        splitmix(self.0)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of attribute `k` of `object` at `version`; `null` for an absent optional value.
pub fn attribute_value(
    seed: u64,
    attribute: &Attribute,
    is_object_id: bool,
    object: u64,
    k: u64,
    version: u64,
) -> Value {
    if is_object_id {
        return object_id(seed, attribute, object);
    }
    let h = Hasher::new(seed).add(object).add(k).add(version).finish();
    if !attribute.required && h.is_multiple_of(20) {
        return Value::Null;
    }
    let h = h / 20;
    if !attribute.hint.values.is_empty() {
        return attribute.hint.values[(h % attribute.hint.values.len() as u64) as usize].clone();
    }
    match attribute.ty {
        AttrType::Text => Value::String(format!("{} {}", attribute.name, h % 1000)),
        AttrType::Integer => {
            let (min, max) = int_range(attribute, 0, 100_000);
            let span = (i128::from(max) - i128::from(min) + 1) as u128;
            Value::from((i128::from(min) + (u128::from(h) % span) as i128) as i64)
        }
        AttrType::Decimal => {
            let (min, max) = int_range(attribute, 0, 100_000);
            let span = (i128::from(max) - i128::from(min)).max(1) as u128;
            let whole = (i128::from(min) + (u128::from(h) % span) as i128) as i64;
            Value::String(format!("{whole}.{:02}", (h >> 32) % 100))
        }
        AttrType::Boolean => Value::Bool(h & 1 == 1),
        AttrType::Date => {
            let (min, max) = date_range(attribute);
            let span = (max - min).num_days().max(1) as u64;
            Value::String((min + Duration::days((h % span) as i64)).to_string())
        }
        AttrType::Timestamp => {
            let seconds = (h % (26 * 365 * 86_400)) as i64;
            let base = NaiveDate::from_ymd_opt(2000, 1, 1)
                .unwrap_or_default()
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default();
            Value::String(format!(
                "{}Z",
                (base + Duration::seconds(seconds)).format("%Y-%m-%dT%H:%M:%S")
            ))
        }
        AttrType::Uuid => Value::String(uuid::Uuid::from_u64_pair(h, splitmix(h)).to_string()),
    }
}

/// A value unique to `object`: what registers use as object ids.
fn object_id(seed: u64, attribute: &Attribute, object: u64) -> Value {
    match attribute.ty {
        AttrType::Integer | AttrType::Decimal => {
            let (min, _) = int_range(attribute, 1_000_000, i64::MAX);
            Value::from(min + object as i64)
        }
        AttrType::Uuid => {
            let h = Hasher::new(seed).add(object).add(0x1D);
            Value::String(
                uuid::Uuid::from_u64_pair(h.clone().add(1).finish(), h.add(2).finish()).to_string(),
            )
        }
        // A CPR-shaped ten-digit number (DDMMYY + four digits), unique for 336 million objects.
        // (Definitions allow only text, integer and uuid object ids.)
        _ => {
            let date = object % 33_600;
            let (day, month, year) = (date % 28 + 1, date / 28 % 12 + 1, date / 336);
            Value::String(format!(
                "{day:02}{month:02}{year:02}{:04}",
                object / 33_600 % 10_000
            ))
        }
    }
}

fn int_range(attribute: &Attribute, min: i64, max: i64) -> (i64, i64) {
    let min = attribute
        .hint
        .min
        .as_ref()
        .and_then(Value::as_i64)
        .unwrap_or(min);
    let max = attribute
        .hint
        .max
        .as_ref()
        .and_then(Value::as_i64)
        .unwrap_or(max)
        .max(min);
    (min, max)
}

fn date_range(attribute: &Attribute) -> (NaiveDate, NaiveDate) {
    let parse = |v: &Option<Value>, default: (i32, u32, u32)| {
        v.as_ref()
            .and_then(Value::as_str)
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .or_else(|| NaiveDate::from_ymd_opt(default.0, default.1, default.2))
            .unwrap_or_default()
    };
    (
        parse(&attribute.hint.min, (1950, 1, 1)),
        parse(&attribute.hint.max, (2025, 12, 31)),
    )
}
