//! Request-level checks async-graphql does not make itself (alias and root-field counts), and a
//! stable `extensions.code` on every parse and validation error.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::Limits;
use super::errors::{codes, ensure_code, parse_code, validation_code};

/// The extension factory.
pub struct Guard {
    max_aliases: usize,
    max_root_fields: usize,
}

impl Guard {
    /// A guard enforcing `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_aliases: limits.max_aliases,
            max_root_fields: limits.max_root_fields,
        }
    }
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension {
            max_aliases: self.max_aliases,
            max_root_fields: self.max_root_fields,
        })
    }
}

struct GuardExtension {
    max_aliases: usize,
    max_root_fields: usize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|mut e| {
            let code = parse_code(&e.message);
            ensure_code(&mut e, code);
            e
        })?;
        self.check(&document)?;
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_ok()
            && let Some(started) = ctx.data_opt::<Started>()
        {
            started.0.store(true, Ordering::Relaxed);
        }
        result.map_err(|mut errors| {
            for e in &mut errors {
                let code = validation_code(&e.message);
                ensure_code(e, code);
            }
            errors
        })
    }
}

/// Set once a request passed validation: its response has a `data` entry (GraphQL-over-HTTP
/// answers 200 then, and 4xx for a request refused before).
#[derive(Debug, Clone, Default)]
pub struct Started(Arc<AtomicBool>);

impl Started {
    /// Whether execution began.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl GuardExtension {
    fn check(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let mut aliases = 0;
        for (_, operation) in document.operations.iter() {
            let roots = root_fields(
                document,
                &operation.node.selection_set.node,
                &mut HashSet::new(),
            );
            if operation.node.ty == OperationType::Subscription && roots != 1 {
                // The spec's "single root field" rule, which async-graphql does not check.
                let mut error = ServerError::new(
                    format!("a subscription selects exactly one root field, not {roots}"),
                    Some(operation.pos),
                );
                ensure_code(&mut error, codes::VALIDATION_FAILED);
                return Err(error);
            }
            if roots > self.max_root_fields {
                return Err(limit(format!(
                    "the operation selects {roots} root fields; at most {} are allowed",
                    self.max_root_fields
                )));
            }
            aliases += count_aliases(&operation.node.selection_set.node);
        }
        for fragment in document.fragments.values() {
            aliases += count_aliases(&fragment.node.selection_set.node);
        }
        if aliases > self.max_aliases {
            return Err(limit(format!(
                "the request uses {aliases} aliases; at most {} are allowed",
                self.max_aliases
            )));
        }
        Ok(())
    }
}

/// The root fields a selection selects, through fragments and inline fragments (a fragment
/// cycle, refused later by validation, is followed once).
fn root_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    seen: &mut HashSet<&'a str>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(f) => root_fields(document, &f.node.selection_set.node, seen),
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(name) {
                    Some(fragment) if seen.insert(name) => {
                        root_fields(document, &fragment.node.selection_set.node, seen)
                    }
                    _ => 0,
                }
            }
        })
        .sum()
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => count_aliases(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

fn limit(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    ensure_code(&mut error, codes::LIMIT_EXCEEDED);
    error
}
