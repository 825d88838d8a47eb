//! Request-level checks async-graphql does not make itself (alias and root-field counts), and a
//! stable `extensions.code` on every parse and validation error.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::Limits;
use super::errors::{codes, ensure_code, validation_code};

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
            ensure_code(&mut e, codes::PARSE_FAILED);
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
        next.run(ctx).await.map_err(|mut errors| {
            for e in &mut errors {
                let code = validation_code(&e.message);
                ensure_code(e, code);
            }
            errors
        })
    }
}

impl GuardExtension {
    fn check(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let mut aliases = 0;
        for (_, operation) in document.operations.iter() {
            let roots = operation.node.selection_set.node.items.len();
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
