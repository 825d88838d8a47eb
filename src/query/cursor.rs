//! Opaque keyset cursors: base64 of `<field>:<key>`, so a cursor of one connection is refused by
//! another instead of silently paging something else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// A position in a connection: the key of the last item seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After this eventid.
    Event(i64),
    /// After this datafordelerRowId.
    Row(Uuid),
}

impl Cursor {
    /// Encodes the cursor for the connection called `field` (`BBR_Events`).
    pub fn encode(self, field: &str) -> String {
        let key = match self {
            Cursor::Event(id) => id.to_string(),
            Cursor::Row(id) => id.simple().to_string(),
        };
        URL_SAFE_NO_PAD.encode(format!("{field}:{key}"))
    }

    /// Decodes a cursor of the connection `field`; `events` tells which key it holds.
    pub fn decode(text: &str, field: &str, events: bool) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let key = text.strip_prefix(field)?.strip_prefix(':')?;
        if events {
            key.parse().ok().filter(|id| *id >= 0).map(Cursor::Event)
        } else {
            Uuid::try_parse(key).ok().map(Cursor::Row)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_only_for_its_own_connection() {
        let cursor = Cursor::Event(42).encode("BBR_Events");
        assert_eq!(
            Cursor::decode(&cursor, "BBR_Events", true),
            Some(Cursor::Event(42))
        );
        assert_eq!(Cursor::decode(&cursor, "CVR_Events", true), None);
        assert_eq!(Cursor::decode(&cursor, "BBR_Eventsx", true), None);
        assert_eq!(Cursor::decode("not base64!", "BBR_Events", true), None);
        let row = Cursor::Row(Uuid::nil()).encode("BBR_Bygning");
        assert_eq!(
            Cursor::decode(&row, "BBR_Bygning", false),
            Some(Cursor::Row(Uuid::nil()))
        );
    }
}
