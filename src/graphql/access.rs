//! Who may read what. Open entities (the register definitions say which) are for everyone;
//! a protected entity (all of CPR) needs a grant of the caller's credential (`auth::Grants`).
//! A read of one without it is refused with `FORBIDDEN`, and its events are left out of every
//! events page and stream: they never leave the server.

use std::sync::Arc;

use super::errors::ApiError;
use crate::auth::Principal;
use crate::registry::{Entity, Register};

/// The reading rights of one request.
#[derive(Debug, Clone, Default)]
pub struct Access {
    principal: Option<Arc<Principal>>,
}

impl Access {
    /// An anonymous caller: open entities only.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// An authenticated caller: open entities and what its grants name.
    pub fn of(principal: Principal) -> Self {
        Self {
            principal: Some(Arc::new(principal)),
        }
    }

    /// The caller, when authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// Whether the caller may read `entity`'s rows and events.
    pub fn may_read(&self, register: &Register, entity: &Entity) -> bool {
        !entity.protected
            || self
                .principal
                .as_ref()
                .is_some_and(|p| p.grants.allows(&register.name, &entity.name))
    }

    /// Refuses a read of `entity` the caller may not make.
    pub fn check(&self, register: &Register, entity: &Entity) -> Result<(), ApiError> {
        if self.may_read(register, entity) {
            return Ok(());
        }
        Err(forbidden(register, &entity.name, self.principal.is_some()))
    }

    /// The entities of `register` whose events must be left out of the caller's event pages.
    pub fn hidden_entities(&self, register: &Register) -> Vec<String> {
        register
            .entities
            .iter()
            .filter(|e| !self.may_read(register, e))
            .map(|e| e.name.clone())
            .collect()
    }
}

/// The error for a read of a protected entity.
pub fn forbidden(register: &Register, entity: &str, authenticated: bool) -> ApiError {
    ApiError::Forbidden(if authenticated {
        format!(
            "{}_{entity} is protected and your credential has no grant for it ({}:{entity} or \
             {}:*)",
            register.name, register.name, register.name
        )
    } else {
        format!(
            "{}_{entity} is protected: send a bearer token or an API key with a grant for it",
            register.name
        )
    })
}
