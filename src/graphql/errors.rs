//! The one error type of the API and its stable `extensions.code`s. Messages say what was wrong
//! and where; internal details (SQL, database errors) are logged, never sent.

use async_graphql::{ErrorExtensions, ServerError};

/// An error a GraphQL operation answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The input is wrong: a bad cursor, filter value or argument.
    #[error("{0}")]
    BadUserInput(String),
    /// The input is over a configured limit (page size, `in` list, aliases...).
    #[error("{0}")]
    LimitExceeded(String),
    /// The caller may not read this.
    #[error("{0}")]
    Forbidden(String),
    /// The server cannot serve this now (it is shutting down); retry, on another instance.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside; the details are in the server log.
    #[error("internal error; the server log has the details")]
    Internal,
}

impl ApiError {
    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadUserInput(_) => codes::BAD_USER_INPUT,
            ApiError::LimitExceeded(_) => codes::LIMIT_EXCEEDED,
            ApiError::Forbidden(_) => codes::FORBIDDEN,
            ApiError::Unavailable(_) => codes::UNAVAILABLE,
            ApiError::Internal => codes::INTERNAL,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(error = %error, "database error while answering a GraphQL request");
        ApiError::Internal
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", code))
    }
}

/// The codes, as constants.
pub mod codes {
    /// A filter value, cursor or argument is wrong.
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// Over a configured limit.
    pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
    /// Not allowed for this caller.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// A credential was presented and refused (HTTP 401).
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// A failure inside the server.
    pub const INTERNAL: &str = "INTERNAL";
    /// The server cannot serve this now (shutting down, too many streams); retry later.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// The request is not valid GraphQL syntax.
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    /// The request does not fit the schema.
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// The request took longer than the configured timeout.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The request is not a well-formed GraphQL-over-HTTP request.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
}

/// Sets `code` on an error that has none.
pub fn ensure_code(error: &mut ServerError, code: &str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// The code of an error raised while parsing: over the nesting limit, or bad syntax.
pub fn parse_code(message: &str) -> &'static str {
    if message.contains("recursion") || message.contains("stack limit") {
        codes::LIMIT_EXCEEDED
    } else {
        codes::PARSE_FAILED
    }
}

/// The code of a schema-validation error: over a limit, a bad input value, or a query that does
/// not fit the schema.
pub fn validation_code(message: &str) -> &'static str {
    if message.starts_with("Query is too complex")
        || message.starts_with("Query is nested too deep")
        || message.contains("too many directives")
    {
        codes::LIMIT_EXCEEDED
    } else if message.contains("unknown field") {
        // async-graphql words an unknown input field as an invalid value: it is a query that
        // does not fit the schema (an operator or field `where` does not offer).
        codes::VALIDATION_FAILED
    } else if message.starts_with("Invalid value for argument")
        || message.starts_with("Invalid value for variable")
        || message.contains("is not a valid")
    {
        codes::BAD_USER_INPUT
    } else {
        codes::VALIDATION_FAILED
    }
}
