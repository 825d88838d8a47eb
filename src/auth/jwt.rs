//! Bearer tokens: JWTs (RFC 7519) verified with `jsonwebtoken`. The operator pins the keys
//! (a JWKS file, whose keys are chosen by `kid`, PEM public keys, or an HS256 secret) and the
//! accepted algorithms; a token's own `alg` only selects among them, and `none` is never
//! accepted. `exp` is required; `nbf`, `iss` and `aud` are checked with a small leeway.

use std::path::PathBuf;

use chrono::DateTime;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use super::{AuthError, Grants, Principal};

/// How bearer tokens are verified (`fordeler serve --jwt-*`).
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys": [...]}`) of RSA or EC public keys; a token's `kid` picks one.
    pub jwks: Option<PathBuf>,
    /// PEM files of RSA or EC public keys, tried in turn for tokens without a `kid`.
    pub public_keys: Vec<PathBuf>,
    /// A file holding an HS256 shared secret (at least 32 bytes).
    pub hs256_secret: Option<PathBuf>,
    /// The accepted algorithms; empty means those the configured keys imply.
    pub algorithms: Vec<Algorithm>,
    /// The required `iss`.
    pub issuer: Option<String>,
    /// The required `aud`.
    pub audience: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// The claim holding the grants (a space-separated string or a list of strings).
    pub grants_claim: String,
}

impl JwtConfig {
    /// Whether any key is configured (else bearer tokens are refused).
    pub fn is_enabled(&self) -> bool {
        self.jwks.is_some() || !self.public_keys.is_empty() || self.hs256_secret.is_some()
    }
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    /// Keys with a `kid`.
    by_kid: Vec<(String, DecodingKey, Algorithm)>,
    /// Keys without one.
    anonymous: Vec<(DecodingKey, Algorithm)>,
    validation: Validation,
    grants_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "kids",
                &self
                    .by_kid
                    .iter()
                    .map(|(k, _, a)| (k, a))
                    .collect::<Vec<_>>(),
            )
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the keys of `config`; every problem is an error naming the file.
    pub fn load(config: &JwtConfig) -> anyhow::Result<Self> {
        let mut by_kid = Vec::new();
        let mut anonymous = Vec::new();
        if let Some(path) = &config.jwks {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--jwt-jwks {}: {e}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--jwt-jwks {}: not a JWKS: {e}", path.display()))?;
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone().ok_or_else(|| {
                    anyhow::anyhow!("--jwt-jwks {}: a key without `kid`", path.display())
                })?;
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| anyhow::anyhow!("--jwt-jwks {} key {kid}: {e}", path.display()))?;
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => anyhow::bail!(
                        "--jwt-jwks {} key {kid}: only RSA and EC public keys are accepted",
                        path.display()
                    ),
                };
                by_kid.push((kid, key, algorithm));
            }
        }
        for path in &config.public_keys {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--jwt-public-key {}: {e}", path.display()))?;
            let key = match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (key, Algorithm::RS256),
                Err(_) => (
                    DecodingKey::from_ec_pem(&pem).map_err(|e| {
                        anyhow::anyhow!(
                            "--jwt-public-key {}: not an RSA or EC public key in PEM: {e}",
                            path.display()
                        )
                    })?,
                    Algorithm::ES256,
                ),
            };
            anonymous.push(key);
        }
        if let Some(path) = &config.hs256_secret {
            let secret = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--jwt-hs256-secret-file {}: {e}", path.display()))?;
            let secret = secret.trim();
            if secret.len() < 32 {
                anyhow::bail!(
                    "--jwt-hs256-secret-file {}: the secret must have at least 32 characters",
                    path.display()
                );
            }
            anonymous.push((
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ));
        }
        if by_kid.is_empty() && anonymous.is_empty() {
            anyhow::bail!("no JWT keys configured");
        }
        let (Some(issuer), Some(audience)) = (&config.issuer, &config.audience) else {
            anyhow::bail!("bearer tokens need --jwt-issuer and --jwt-audience");
        };
        let mut algorithms = config.algorithms.clone();
        if algorithms.is_empty() {
            for algorithm in by_kid
                .iter()
                .map(|(_, _, a)| *a)
                .chain(anonymous.iter().map(|(_, a)| *a))
            {
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Self {
            by_kid,
            anonymous,
            validation,
            grants_claim: if config.grants_claim.is_empty() {
                "scope".to_owned()
            } else {
                config.grants_claim.clone()
            },
        })
    }

    /// The principal `token` proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = decode_header(token)
            .map_err(|_| AuthError("the bearer token is not a well-formed JWT".into()))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError(format!(
                "the bearer token is signed with {:?}, which this server does not accept",
                header.alg
            )));
        }
        // Only keys of the token's algorithm are tried: an RSA key never verifies an HMAC.
        let keys: Vec<&DecodingKey> = match &header.kid {
            Some(kid) => self
                .by_kid
                .iter()
                .filter(|(k, _, a)| k == kid && *a == header.alg)
                .map(|(_, key, _)| key)
                .chain(
                    self.anonymous
                        .iter()
                        .filter(|(_, a)| *a == header.alg)
                        .map(|(key, _)| key),
                )
                .collect(),
            None => self
                .anonymous
                .iter()
                .filter(|(_, a)| *a == header.alg)
                .map(|(key, _)| key)
                .collect(),
        };
        if keys.is_empty() {
            return Err(AuthError(
                "no configured key matches the bearer token's kid and algorithm".into(),
            ));
        }
        // jsonwebtoken wants every accepted algorithm to suit the key: ask for the one.
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut last = None;
        for key in keys {
            match decode::<Value>(token, key, &validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => last = Some(e),
            }
        }
        let reason = match last.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "it has expired",
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => "it is not valid yet (nbf)",
            Some(jsonwebtoken::errors::ErrorKind::InvalidIssuer) => "its issuer is not accepted",
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "its audience is not this server"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidSignature) => "its signature is invalid",
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)) => {
                "it lacks exp, iss or aud"
            }
            _ => {
                let detail = last.map_or_else(String::new, |e| e.to_string());
                return Err(AuthError(format!(
                    "the bearer token is refused: it could not be verified ({detail})"
                )));
            }
        };
        Err(AuthError(format!("the bearer token is refused: {reason}")))
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let grants = match &claims[&self.grants_claim] {
            Value::String(text) => Grants::parse(text),
            Value::Array(items) => {
                let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                Grants::parse(&texts.join(" "))
            }
            Value::Null => Ok(Grants::default()),
            _ => Err(format!(
                "the {} claim is not a string or a list",
                self.grants_claim
            )),
        };
        // Scopes that are not grants (`openid`, `profile`) are common in OAuth tokens: keep
        // the ones that are.
        let grants = grants.unwrap_or_else(|_| {
            let text = claims[&self.grants_claim]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default();
            let kept: Vec<&str> = text
                .split(' ')
                .filter(|item| Grants::parse(item).is_ok())
                .collect();
            Grants::parse(&kept.join(" ")).unwrap_or_default()
        });
        let issuer = claims["iss"].as_str().unwrap_or_default();
        let subject = claims["sub"].as_str().unwrap_or("(no sub)");
        Ok(Principal {
            id: format!("jwt:{issuer}/{subject}"),
            grants,
            expires_at: claims["exp"]
                .as_i64()
                .and_then(|exp| DateTime::from_timestamp(exp, 0)),
        })
    }
}
