//! `fordeler replica verify`: compares a replica with its source, entity by entity, by row count
//! and an order-independent checksum of every field of every stored registration. The source
//! side is a full scan through the public API (`allRegistrations: true`, keyset pages).

use serde::Serialize;

use super::schema::Checksum;
use super::{ReplicaError, Source, Target};

/// One entity's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct EntityReport {
    /// Entity name.
    pub entity: String,
    /// The source's rows.
    pub source: Checksum,
    /// The replica's rows.
    pub replica: Checksum,
    /// Count and checksum agree.
    pub identical: bool,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Register code.
    pub register: String,
    /// The replica's last applied eventid.
    pub checkpoint: i64,
    /// The source's head when the scan began.
    pub head: i64,
    /// The source's head when it ended: if it moved, imports ran meanwhile and a difference
    /// may be only that.
    pub head_after: i64,
    /// Per entity.
    pub entities: Vec<EntityReport>,
    /// Every entity is identical.
    pub identical: bool,
}

/// Compares the replica of `register` in `target` with `source`.
pub async fn verify(
    source: &Source,
    target: &Target,
    register: &str,
    page_size: usize,
) -> Result<VerifyReport, ReplicaError> {
    let state = target.state(register).await?.ok_or_else(|| {
        ReplicaError::Usage(format!(
            "the target holds no replica of {register}: run `fordeler replica sync` first"
        ))
    })?;
    let remote = source.schema().await?;
    if let Some(difference) = state.schema.difference(&remote) {
        return Err(ReplicaError::Schema(difference));
    }
    let head = source.head().await?;
    let mut entities = Vec::new();
    for entity in &state.schema.entities {
        let mut theirs = Checksum::default();
        let mut after: Option<String> = None;
        loop {
            let (rows, next) = source.scan(entity, after.as_deref(), page_size).await?;
            for row in &rows {
                theirs.add(entity, row);
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        let ours = target.checksum(register, entity).await?;
        entities.push(EntityReport {
            entity: entity.name.clone(),
            identical: ours == theirs,
            source: theirs,
            replica: ours,
        });
    }
    let head_after = source.head().await?;
    Ok(VerifyReport {
        register: register.to_owned(),
        checkpoint: state.checkpoint,
        head: head.last_event_id,
        head_after: head_after.last_event_id,
        identical: entities.iter().all(|e| e.identical),
        entities,
    })
}
