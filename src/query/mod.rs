//! The read side of the store: filters, cursors, and pages of events and register rows.
//!
//! Knows nothing of GraphQL or HTTP: the API layer parses its inputs into the types here
//! ([`Filter`], [`Cursor`], [`Bitemporal`]) and renders what comes back.

pub mod cursor;
pub mod decimal;
pub mod entities;
pub mod events;
pub mod filter;
pub mod status;

pub use cursor::Cursor;
pub use decimal::Decimal;
pub use entities::{Bitemporal, EntityPage, EntityQuery, EntityRow};
pub use events::{EventPage, EventQuery, EventRow};
pub use filter::{Column, Filter, Record, Scalar, Test};
pub use status::{ImportStatus, import_status};
