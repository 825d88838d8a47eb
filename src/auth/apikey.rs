//! API keys: `fordeler_<id>_<secret>`. The id finds the row; only the SHA-256 of the secret is
//! stored, compared in constant time. A key is shown once, at creation.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{AuthError, Grants, Principal};

const PREFIX: &str = "fordeler_";

/// A stored key, without its secret.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ApiKey {
    /// Its id (the public half).
    pub id: Uuid,
    /// Who it was issued to.
    pub owner: String,
    /// What it may read.
    pub grants: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Makes a key for `owner` with `grants`; returns it (the only time it is shown) and its id.
pub async fn create(
    pool: &PgPool,
    owner: &str,
    grants: &Grants,
    expires_at: Option<DateTime<Utc>>,
) -> anyhow::Result<(String, Uuid)> {
    anyhow::ensure!(!owner.trim().is_empty(), "--owner must not be empty");
    let id = Uuid::now_v7();
    // 32 random bytes from two v4 UUIDs' 122 random bits each (the OS's CSPRNG via `uuid`).
    let mut secret = Vec::with_capacity(32);
    secret.extend_from_slice(Uuid::new_v4().as_bytes());
    secret.extend_from_slice(Uuid::new_v4().as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret);
    sqlx::query(
        "INSERT INTO api_keys (id, secret_sha256, owner, grants, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(Sha256::digest(secret.as_bytes()).to_vec())
    .bind(owner.trim())
    .bind(grants.to_string())
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok((format!("{PREFIX}{}_{secret}", id.simple()), id))
}

/// Every key, newest first.
pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<ApiKey>> {
    Ok(sqlx::query_as::<_, ApiKey>(
        "SELECT id, owner, grants, created_at, expires_at, revoked_at FROM api_keys \
         ORDER BY created_at DESC",
    )
    .fetch_all(pool)
    .await?)
}

/// Revokes key `id`; false when there is no such key or it was already revoked.
pub async fn revoke(pool: &PgPool, id: Uuid) -> anyhow::Result<bool> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// The principal `key` proves: it must exist, match, and be neither expired nor revoked.
pub async fn verify(pool: &PgPool, key: &str) -> Result<Principal, AuthError> {
    let refused = || AuthError("the API key is not valid".into());
    let rest = key.strip_prefix(PREFIX).ok_or_else(refused)?;
    let (id, secret) = rest.split_once('_').ok_or_else(refused)?;
    let id = Uuid::try_parse(id).map_err(|_| refused())?;
    type Row = (
        Vec<u8>,
        String,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT secret_sha256, grants, expires_at, revoked_at FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(|e| {
        tracing::error!("cannot look up an API key: {e}");
        AuthError("API keys cannot be checked right now".into())
    })?;
    let Some((stored, grants, expires_at, revoked_at)) = row else {
        return Err(refused());
    };
    let given = Sha256::digest(secret.as_bytes());
    let differs = stored
        .iter()
        .zip(given.iter())
        .fold(u8::from(stored.len() != given.len()), |acc, (a, b)| {
            acc | (a ^ b)
        });
    if differs != 0 {
        return Err(refused());
    }
    if revoked_at.is_some() {
        return Err(AuthError("the API key was revoked".into()));
    }
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(AuthError("the API key has expired".into()));
    }
    Ok(Principal {
        id: format!("apikey:{id}"),
        grants: Grants::parse(&grants).map_err(|e| {
            tracing::error!("API key {id} has unreadable grants: {e}");
            refused()
        })?,
        expires_at,
    })
}
