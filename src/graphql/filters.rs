//! `where` inputs: the filter input types derived from register definitions, and the parsing of
//! a `where` argument into the one [`Filter`] representation.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::Name;
use async_graphql::Value;
use async_graphql::dynamic::{InputObject, InputValue, TypeRef};
use async_graphql::indexmap::IndexMap;

use super::Limits;
use super::errors::ApiError;
use super::scalars;
use crate::query::{Column, Filter, Scalar, Test};
use crate::registry::AttrType;

/// Operators per kind of field, beyond Datafordeler's (`neq`, `nin`) included.
const EQUALITY: [&str; 4] = ["eq", "neq", "in", "nin"];
const ORDERING: [&str; 8] = ["gt", "gte", "lt", "lte", "ngt", "ngte", "nlt", "nlte"];

/// How deep `and`/`or` may nest.
const MAX_NESTING: usize = 16;

/// A filterable field of one `where` input type.
#[derive(Debug, Clone)]
pub struct FilterField {
    /// Its column.
    pub column: Arc<Column>,
    /// Text only: `startsWith` is offered.
    pub searchable: bool,
}

/// The fields of one `where` input type, by name.
pub type FilterFields = HashMap<String, FilterField>;

/// The name of the operator input type for a field.
pub fn operator_type_name(ty: AttrType, searchable: bool) -> &'static str {
    match ty {
        AttrType::Text if searchable => "DafSearchableStringOperationFilterInput",
        AttrType::Text => "DafStringOperationFilterInput",
        AttrType::Integer => "DafLongOperationFilterInput",
        AttrType::Decimal => "DafDecimalOperationFilterInput",
        AttrType::Boolean => "DafBooleanOperationFilterInput",
        AttrType::Date => "DafLocalDateOperationFilterInput",
        AttrType::Timestamp => "DafDateTimeOperationFilterInput",
        AttrType::Uuid => "DafUuidOperationFilterInput",
    }
}

/// The shared operator input types, one per kind of field.
pub fn operator_types() -> Vec<InputObject> {
    let kinds = [
        (AttrType::Text, true),
        (AttrType::Text, false),
        (AttrType::Integer, false),
        (AttrType::Decimal, false),
        (AttrType::Boolean, false),
        (AttrType::Date, false),
        (AttrType::Timestamp, false),
        (AttrType::Uuid, false),
    ];
    kinds
        .into_iter()
        .map(|(ty, searchable)| operator_type(ty, searchable))
        .collect()
}

fn operator_type(ty: AttrType, searchable: bool) -> InputObject {
    let scalar = scalars::type_name(ty);
    let mut input = InputObject::new(operator_type_name(ty, searchable)).description(format!(
        "Conditions on a {scalar} field; several operators in one object must all hold. \
         `eq: null` matches a missing value, `neq: null` a present one."
    ));
    let ops: Vec<&str> = match ty {
        AttrType::Boolean => vec!["eq", "neq"],
        AttrType::Text | AttrType::Uuid => EQUALITY.to_vec(),
        _ => EQUALITY.iter().chain(ORDERING.iter()).copied().collect(),
    };
    for op in ops {
        let field_ty = match op {
            "in" | "nin" => TypeRef::named_nn_list(scalar),
            _ => TypeRef::named(scalar),
        };
        input = input.field(InputValue::new(op, field_ty));
    }
    if searchable {
        input = input.field(InputValue::new(
            "startsWith",
            TypeRef::named(TypeRef::STRING),
        ));
    }
    input
}

/// A `where` input type called `name` over `fields`, with `and` and `or`.
pub fn filter_type(name: &str, description: &str, fields: &[(String, FilterField)]) -> InputObject {
    let mut input = InputObject::new(name)
        .description(description)
        .field(
            InputValue::new("and", TypeRef::named_nn_list(name)).description("All of these hold."),
        )
        .field(
            InputValue::new("or", TypeRef::named_nn_list(name))
                .description("At least one of these holds."),
        );
    for (field, filter_field) in fields {
        let ty = operator_type_name(filter_field.column.ty, filter_field.searchable);
        input = input.field(InputValue::new(field.as_str(), TypeRef::named(ty)));
    }
    input
}

/// Parses a `where` argument. Errors name the path (`where.and[1].kommunekode.in`).
pub fn parse_filter(
    value: Option<&Value>,
    fields: &FilterFields,
    limits: &Limits,
) -> Result<Filter, ApiError> {
    let Some(value) = value.filter(|v| **v != Value::Null) else {
        return Ok(Filter::all());
    };
    let mut parser = Parser {
        fields,
        limits,
        terms: 0,
    };
    parser.object(object(value, "where")?, "where", 0)
}

struct Parser<'a> {
    fields: &'a FilterFields,
    limits: &'a Limits,
    terms: usize,
}

impl Parser<'_> {
    fn object(
        &mut self,
        obj: &IndexMap<Name, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Filter, ApiError> {
        if depth > MAX_NESTING {
            return Err(ApiError::LimitExceeded(format!(
                "{path}: and/or nest deeper than {MAX_NESTING} levels"
            )));
        }
        let mut parts = Vec::new();
        for (key, value) in obj {
            if *value == Value::Null {
                continue;
            }
            let path = format!("{path}.{key}");
            match key.as_str() {
                "and" => parts.push(Filter::All(self.list(value, &path, depth)?)),
                "or" => parts.push(Filter::Any(self.list(value, &path, depth)?)),
                name => parts.extend(self.field(name, value, &path)?),
            }
        }
        Ok(match parts.len() {
            1 => parts.pop().unwrap_or_else(Filter::all),
            _ => Filter::All(parts),
        })
    }

    fn list(&mut self, value: &Value, path: &str, depth: usize) -> Result<Vec<Filter>, ApiError> {
        list(value, path)?
            .iter()
            .enumerate()
            .map(|(n, item)| {
                let path = format!("{path}[{n}]");
                self.object(object(item, &path)?, &path, depth + 1)
            })
            .collect()
    }

    fn field(&mut self, name: &str, value: &Value, path: &str) -> Result<Vec<Filter>, ApiError> {
        let field = self
            .fields
            .get(name)
            .ok_or_else(|| bad(path, "is not a filterable field"))?;
        let mut tests = Vec::new();
        for (op, operand) in object(value, path)? {
            let path = format!("{path}.{op}");
            let test = self.test(field, op.as_str(), operand, &path)?;
            self.terms += 1;
            if self.terms > self.limits.max_filter_terms {
                return Err(ApiError::LimitExceeded(format!(
                    "{path}: the filter has more than {} conditions",
                    self.limits.max_filter_terms
                )));
            }
            tests.push(Filter::Cond(field.column.clone(), test));
        }
        Ok(tests)
    }

    fn test(
        &self,
        field: &FilterField,
        op: &str,
        operand: &Value,
        path: &str,
    ) -> Result<Test, ApiError> {
        let ty = field.column.ty;
        let one = || scalars::parse(ty, operand).map_err(|e| bad(path, &e));
        if *operand == Value::Null {
            return match op {
                "eq" => Ok(Test::IsNull),
                "neq" => Ok(Test::IsNotNull),
                _ => Err(bad(path, "only eq and neq accept null")),
            };
        }
        Ok(match op {
            "eq" => Test::Eq(one()?),
            "neq" => Test::Neq(one()?),
            "in" => Test::In(self.many(ty, operand, path)?),
            "nin" => Test::Nin(self.many(ty, operand, path)?),
            "gt" | "nlte" => Test::Gt(one()?),
            "gte" | "nlt" => Test::Gte(one()?),
            "lt" | "ngte" => Test::Lt(one()?),
            "lte" | "ngt" => Test::Lte(one()?),
            "startsWith" if field.searchable => match operand {
                Value::String(prefix) => Test::StartsWith(prefix.clone()),
                _ => return Err(bad(path, "expected a String")),
            },
            _ => return Err(bad(path, "is not an operator of this field")),
        })
    }

    fn many(&self, ty: AttrType, operand: &Value, path: &str) -> Result<Vec<Scalar>, ApiError> {
        let items = list(operand, path)?;
        if items.len() > self.limits.max_in_list {
            return Err(ApiError::LimitExceeded(format!(
                "{path}: {} values; at most {} are allowed",
                items.len(),
                self.limits.max_in_list
            )));
        }
        items
            .iter()
            .enumerate()
            .map(|(n, v)| scalars::parse(ty, v).map_err(|e| bad(&format!("{path}[{n}]"), &e)))
            .collect()
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a IndexMap<Name, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(bad(path, "expected an input object")),
    }
}

/// A list; a single value stands for a list of one, as GraphQL input coercion has it.
fn list<'a>(value: &'a Value, path: &str) -> Result<std::borrow::Cow<'a, [Value]>, ApiError> {
    match value {
        Value::List(items) => Ok(std::borrow::Cow::Borrowed(items)),
        Value::Null => Err(bad(path, "expected a list")),
        one => Ok(std::borrow::Cow::Owned(vec![one.clone()])),
    }
}

fn bad(path: &str, what: &str) -> ApiError {
    ApiError::BadUserInput(format!("{path}: {what}"))
}
