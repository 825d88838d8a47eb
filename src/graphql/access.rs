//! Who may read what. Until authentication exists, every caller is anonymous and may read only
//! the entities the register definitions leave open; protected entities (all of CPR) are
//! refused with `FORBIDDEN`, and their events never leave the server.

use super::errors::ApiError;
use crate::registry::{Entity, Register};

/// The reading rights of one request.
#[derive(Debug, Clone, Default)]
pub struct Access {
    _anonymous: (),
}

impl Access {
    /// An anonymous caller: open entities only.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Whether the caller may read `entity`'s rows and events.
    pub fn may_read(&self, entity: &Entity) -> bool {
        !entity.protected
    }

    /// Refuses a read of `entity` the caller may not make.
    pub fn check(&self, register: &Register, entity: &Entity) -> Result<(), ApiError> {
        if self.may_read(entity) {
            return Ok(());
        }
        Err(forbidden(register, &entity.name))
    }

    /// The entities of `register` whose events must be left out of the caller's event pages.
    pub fn hidden_entities(&self, register: &Register) -> Vec<String> {
        register
            .entities
            .iter()
            .filter(|e| !self.may_read(e))
            .map(|e| e.name.clone())
            .collect()
    }
}

/// The error for a read of a protected entity.
pub fn forbidden(register: &Register, entity: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "{}_{entity} is protected: reading it needs a grant, and this server does not accept \
         credentials yet",
        register.name
    ))
}
