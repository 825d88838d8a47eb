//! Who is calling: bearer tokens (JWT, verified with keys and algorithms the operator pins) and
//! API keys (stored hashed in PostgreSQL), each carrying grants per register and entity.
//! Knows nothing of GraphQL; `http` turns a request's credentials into a [`Principal`] here, and
//! `graphql::Access` decides with its grants.

pub mod apikey;
pub mod audit;
pub mod jwt;

use std::fmt;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use sqlx::PgPool;

pub use jwt::{JwtConfig, JwtVerifier};

/// What a credential may read: `REGISTER:*` (every entity of a register), `REGISTER:Entity`,
/// or `*` (everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<(String, Option<String>)>);

impl Grants {
    /// Parses grants separated by spaces or commas (`"BBR:* CPR:Person"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut grants = Vec::new();
        for item in text.split([' ', ',']).filter(|s| !s.is_empty()) {
            if item == "*" {
                grants.push(("*".to_owned(), None));
                continue;
            }
            let Some((register, entity)) = item.split_once(':') else {
                return Err(format!(
                    "grant {item:?}: expected REGISTER:Entity, REGISTER:* or *"
                ));
            };
            let valid = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !valid(register) || !(entity == "*" || valid(entity)) {
                return Err(format!(
                    "grant {item:?}: expected REGISTER:Entity, REGISTER:* or *"
                ));
            }
            let entity = (entity != "*").then(|| entity.to_owned());
            grants.push((register.to_owned(), entity));
        }
        Ok(Self(grants))
    }

    /// Whether they cover `entity` of `register`.
    pub fn allows(&self, register: &str, entity: &str) -> bool {
        self.0
            .iter()
            .any(|(r, e)| r == "*" || (r == register && e.as_deref().is_none_or(|e| e == entity)))
    }

    /// Each grant: a register (or `*`) and an entity (`None`: all of them).
    pub fn items(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(r, e)| (r.as_str(), e.as_deref()))
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(r, e)| match (r.as_str(), e) {
                ("*", _) => "*".to_owned(),
                (r, Some(e)) => format!("{r}:{e}"),
                (r, None) => format!("{r}:*"),
            })
            .collect();
        f.write_str(&items.join(" "))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Identifies the credential (never its secret): `jwt:<iss>/<sub>` or `apikey:<id>`.
    pub id: String,
    /// What it may read.
    pub grants: Grants,
    /// When the credential stops being valid; a stream ends then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A credential that was presented and refused: answered with 401 and no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the credentials of requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    jwt: Option<std::sync::Arc<JwtVerifier>>,
    pool: PgPool,
}

impl Authenticator {
    /// Bearer tokens verified by `jwt` (refused when `None`), API keys looked up in `pool`.
    pub fn new(jwt: Option<std::sync::Arc<JwtVerifier>>, pool: PgPool) -> Self {
        Self { jwt, pool }
    }

    /// The caller a request's credentials name: `None` when it presents none (anonymous), an
    /// error when one is malformed, invalid, expired or revoked, or when it presents two.
    ///
    /// Read from `Authorization: Bearer <jwt>`, `Authorization: ApiKey <key>`, `X-Api-Key:
    /// <key>`, or the Datafordeler-style `?apiKey=<key>` of `raw_query`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        raw_query: Option<&str>,
    ) -> Result<Option<Principal>, AuthError> {
        let mut presented = Vec::new();
        for value in headers.get_all(http::header::AUTHORIZATION) {
            let text = value
                .to_str()
                .map_err(|_| AuthError("the Authorization header is not ASCII".into()))?;
            let (scheme, credential) = text.trim().split_once(' ').ok_or_else(|| {
                AuthError(
                    "the Authorization header must be `Bearer <token>` or `ApiKey <key>`".into(),
                )
            })?;
            let credential = credential.trim().to_owned();
            if scheme.eq_ignore_ascii_case("bearer") {
                presented.push(Credential::Bearer(credential));
            } else if scheme.eq_ignore_ascii_case("apikey") {
                presented.push(Credential::ApiKey(credential));
            } else {
                return Err(AuthError(format!(
                    "the Authorization scheme {scheme:?} is not accepted: use Bearer or ApiKey"
                )));
            }
        }
        for value in headers.get_all("x-api-key") {
            let key = value
                .to_str()
                .map_err(|_| AuthError("the X-Api-Key header is not ASCII".into()))?;
            presented.push(Credential::ApiKey(key.trim().to_owned()));
        }
        if let Some(key) = raw_query.and_then(api_key_parameter) {
            presented.push(Credential::ApiKey(key));
        }
        match presented.as_slice() {
            [] => Ok(None),
            [Credential::Bearer(token)] => match &self.jwt {
                Some(jwt) => jwt.verify(token).map(Some),
                None => Err(AuthError(
                    "this server does not accept bearer tokens (no JWT keys are configured)".into(),
                )),
            },
            [Credential::ApiKey(key)] => apikey::verify(&self.pool, key).await.map(Some),
            _ => Err(AuthError("present one credential, not several".into())),
        }
    }
}

enum Credential {
    Bearer(String),
    ApiKey(String),
}

/// The value of `apiKey` in a query string.
fn api_key_parameter(raw_query: &str) -> Option<String> {
    raw_query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "apiKey").then(|| {
            let value = value.replace('+', " ");
            percent_decode(&value)
        })
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `raw_query` with the value of any `apiKey` parameter replaced by `REDACTED`, for logs.
pub fn redact_query(raw_query: &str) -> String {
    raw_query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("apiKey", _)) => "apiKey=REDACTED".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_what_they_name() {
        let grants = Grants::parse("BBR:* CPR:Person,CVR:CVRPerson").expect("valid");
        assert!(grants.allows("BBR", "Bygning"));
        assert!(grants.allows("CPR", "Person"));
        assert!(!grants.allows("CPR", "Navn"));
        assert!(!grants.allows("CVR", "CVREnhed"));
        assert_eq!(grants.to_string(), "BBR:* CPR:Person CVR:CVRPerson");
        assert!(Grants::parse("*").expect("valid").allows("CPR", "Person"));
        assert!(Grants::parse("CPR").is_err());
        assert!(Grants::parse("CPR:Per son;").is_err());
        assert!(Grants::parse("").expect("valid").is_empty());
    }

    #[test]
    fn the_api_key_parameter_is_read_and_redacted() {
        assert_eq!(
            api_key_parameter("query=%7B%7D&apiKey=abc%5Fdef").as_deref(),
            Some("abc_def")
        );
        assert_eq!(api_key_parameter("query=x"), None);
        assert_eq!(
            redact_query("query=x&apiKey=secret&b=1"),
            "query=x&apiKey=REDACTED&b=1"
        );
    }
}
