//! The custom scalars, named as Datafordeler names them, and the conversions between their
//! GraphQL values and the typed [`Scalar`]s of filters and rows.

use async_graphql::Value;
use async_graphql::dynamic::{Scalar as ScalarType, TypeRef};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use uuid::Uuid;

use crate::query::{Decimal, Scalar};
use crate::registry::AttrType;

/// The scalar types the schema declares.
pub fn types() -> Vec<ScalarType> {
    let scalar = |name: &str, description: &str, ty: AttrType| {
        ScalarType::new(name)
            .description(description)
            .validator(move |value| *value == Value::Null || parse(ty, value).is_ok())
    };
    vec![
        scalar("Long", "64-bit signed integer.", AttrType::Integer),
        scalar(
            "DafDateTime",
            "RFC 3339 timestamp with microsecond precision, in UTC on output: \
             `2025-11-24T18:17:05.481142Z`.",
            AttrType::Timestamp,
        ),
        scalar("LocalDate", "Calendar date, `YYYY-MM-DD`.", AttrType::Date),
        scalar(
            "UUID",
            "UUID, hyphenated lowercase on output.",
            AttrType::Uuid,
        ),
        scalar(
            "Decimal",
            "Exact decimal number of any size, a string on output (`\"12.50\"`, with the \
             stored scale) so that no digit is lost; a number or a string on input.",
            AttrType::Decimal,
        ),
    ]
}

/// The GraphQL type of values of `ty`.
pub fn type_name(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Text => TypeRef::STRING,
        AttrType::Integer => "Long",
        AttrType::Decimal => "Decimal",
        AttrType::Boolean => TypeRef::BOOLEAN,
        AttrType::Date => "LocalDate",
        AttrType::Timestamp => "DafDateTime",
        AttrType::Uuid => "UUID",
    }
}

/// Parses a GraphQL input value as a `ty` value; the error says what was expected.
pub fn parse(ty: AttrType, value: &Value) -> Result<Scalar, String> {
    let bad = || format!("{} is not a valid {}", value, type_name(ty));
    match (ty, value) {
        (AttrType::Text, Value::String(s)) => Ok(Scalar::Text(s.clone())),
        (AttrType::Integer, Value::Number(n)) => n.as_i64().map(Scalar::Integer).ok_or_else(bad),
        (AttrType::Integer, Value::String(s)) => s.parse().map(Scalar::Integer).map_err(|_| bad()),
        (AttrType::Decimal, Value::Number(n)) => Decimal::parse(&n.to_string())
            .map(Scalar::Decimal)
            .ok_or_else(bad),
        (AttrType::Decimal, Value::String(s)) => {
            Decimal::parse(s).map(Scalar::Decimal).ok_or_else(bad)
        }
        (AttrType::Boolean, Value::Boolean(b)) => Ok(Scalar::Boolean(*b)),
        (AttrType::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Scalar::Date)
            .map_err(|_| bad()),
        (AttrType::Timestamp, Value::String(s)) => {
            parse_timestamp(s).map(Scalar::Timestamp).ok_or_else(bad)
        }
        (AttrType::Uuid, Value::String(s)) => {
            Uuid::try_parse(s).map(Scalar::Uuid).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// An RFC 3339 timestamp, truncated to the microsecond PostgreSQL stores.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros)
}

/// Renders a value as GraphQL output.
pub fn to_value(scalar: &Scalar) -> Value {
    match scalar {
        Scalar::Text(s) => Value::String(s.clone()),
        Scalar::Integer(n) => Value::from(*n),
        Scalar::Decimal(d) => Value::String(d.to_string()),
        Scalar::Boolean(b) => Value::Boolean(*b),
        Scalar::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
        Scalar::Timestamp(t) => Value::String(timestamp(t)),
        Scalar::Uuid(u) => Value::String(u.hyphenated().to_string()),
    }
}

/// A timestamp as DafDateTime renders it: UTC, six fractional digits.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = parse_timestamp("2025-11-24T19:17:05.4811429+01:00").expect("valid");
        assert_eq!(timestamp(&t), "2025-11-24T18:17:05.481142Z");
    }

    #[test]
    fn values_of_the_wrong_type_are_refused_with_the_expected_type() {
        let err = parse(AttrType::Integer, &Value::String("12a".into())).expect_err("not a Long");
        assert_eq!(err, "\"12a\" is not a valid Long");
        assert!(parse(AttrType::Date, &Value::String("2024-02-30".into())).is_err());
        assert_eq!(
            parse(AttrType::Decimal, &Value::String("12.50".into())),
            Ok(Scalar::Decimal(Decimal::parse("12.5").expect("decimal")))
        );
    }
}
