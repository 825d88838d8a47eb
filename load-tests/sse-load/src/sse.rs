//! Incremental Server-Sent-Events parser. Feed it decoded body bytes in any pieces; it calls
//! back once per message (at the blank line that ends it). It does not parse the JSON: the
//! event id comes from the `id:` line and the package sequence number from a search of the
//! `data:` line for [`SEQ_KEY`].

pub const SEQ_KEY: &[u8] = b"\"datafordelerRegisterImportSequenceNumber\":";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `event: next`
    Next,
    /// No `event:` line, but data (the SSE default type, `message`).
    Message,
    /// `event: complete`
    Complete,
    /// Any other event type.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    /// The message's `id:` when it was a decimal number.
    pub id: Option<u64>,
    /// The first [`SEQ_KEY`] value found in its data.
    pub seq: Option<u64>,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// A line split across feeds, kept until its end arrives.
    partial: Vec<u8>,
    /// The message being read.
    event_type: Option<Kind>,
    has_data: bool,
    id: Option<u64>,
    seq: Option<u64>,
    /// Whether the stream's very first line is still to come (a BOM may start it).
    started: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `data`, calling `on_event` for each complete message in it.
    pub fn feed(&mut self, mut data: &[u8], on_event: &mut impl FnMut(Event)) {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            if self.partial.is_empty() {
                self.line(&data[..nl], on_event);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[..nl]);
                self.line(&line, on_event);
                line.clear();
                self.partial = line; // keep its capacity
            }
            data = &data[nl + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn line(&mut self, mut line: &[u8], on_event: &mut impl FnMut(Event)) {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment: keep-alive
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.has_data = true;
                if self.seq.is_none() {
                    self.seq = find_seq(value);
                }
            }
            b"event" => {
                self.event_type = Some(match value {
                    b"next" => Kind::Next,
                    b"complete" => Kind::Complete,
                    b"message" => Kind::Message,
                    _ => Kind::Other,
                })
            }
            b"id" => self.id = parse_u64(value),
            _ => {} // retry and unknown fields
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        let kind = match self.event_type.take() {
            Some(kind) => Some(kind),
            None if self.has_data => Some(Kind::Message),
            None => None, // e.g. a lone `retry:` or `id:` block
        };
        if let Some(kind) = kind {
            on_event(Event {
                kind,
                id: self.id,
                seq: self.seq,
            });
        }
        self.has_data = false;
        self.id = None;
        self.seq = None;
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u64))
}

/// The digits after the first [`SEQ_KEY`] in `data` (spaces after the colon allowed).
pub fn find_seq(data: &[u8]) -> Option<u64> {
    // Built once: building a searcher costs more than a short search.
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    let at = FINDER
        .get_or_init(|| memchr::memmem::Finder::new(SEQ_KEY))
        .find(data)?;
    let rest = &data[at + SEQ_KEY.len()..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    parse_u64(&rest[..digits])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BodyDecoder, Framing};

    fn parse_all(pieces: &[&[u8]]) -> Vec<Event> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut |e| out.push(e));
        }
        out
    }

    fn next(id: u64, seq: u64) -> Event {
        Event {
            kind: Kind::Next,
            id: Some(id),
            seq: Some(seq),
        }
    }

    const STREAM: &[u8] = b": keep-alive\n\nretry: 5000\n\n\
event: next\nid: 41\ndata: {\"data\":{\"BBR_Events\":{\"eventid\":41,\"datafordelerRegisterImportSequenceNumber\":7}}}\n\n\
:\n\n\
event: next\r\nid: 42\r\ndata: {\"data\":{\"BBR_Events\":{\"eventid\":42,\"datafordelerRegisterImportSequenceNumber\": 8}}}\r\n\r\n\
event: complete\ndata:\n\n";

    fn expected() -> Vec<Event> {
        vec![
            next(41, 7),
            next(42, 8),
            Event {
                kind: Kind::Complete,
                id: None,
                seq: None,
            },
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_all(&[STREAM]), expected());
    }

    #[test]
    fn every_split_point() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let got = parse_all(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(got, expected(), "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_all(&pieces), expected());
    }

    #[test]
    fn comments_and_retry_alone_dispatch_nothing() {
        assert!(parse_all(&[b": ping\n\n:\n\nretry: 100\n\n\n\n"]).is_empty());
    }

    #[test]
    fn message_without_event_line_and_odd_fields() {
        let got = parse_all(&[b"\xEF\xBB\xBFdata: {\"datafordelerRegisterImportSequenceNumber\":3}\nid: x\nfoo: bar\nid\n\n"]);
        assert_eq!(
            got,
            vec![Event {
                kind: Kind::Message,
                id: None,
                seq: Some(3)
            }]
        );
        let got = parse_all(&[b"event: error\ndata: {\"errors\":[]}\n\n"]);
        assert_eq!(
            got,
            vec![Event {
                kind: Kind::Other,
                id: None,
                seq: None
            }]
        );
        // a message whose data is split over lines: the first seq found wins
        let got = parse_all(&[b"event:next\nid:5\ndata: {\"a\":1,\ndata: \"datafordelerRegisterImportSequenceNumber\":12}\n\n"]);
        assert_eq!(got, vec![next(5, 12)]);
    }

    #[test]
    fn seq_search() {
        assert_eq!(
            find_seq(b"{\"datafordelerRegisterImportSequenceNumber\":123,\"x\":1}"),
            Some(123)
        );
        assert_eq!(
            find_seq(b"{\"\"\"datafordelerRegisterImportSequenceNumber\":  9}"),
            Some(9)
        );
        assert_eq!(
            find_seq(b"{\"datafordelerRegisterImportSequenceNumber\":null}"),
            None
        );
        assert_eq!(find_seq(b"{\"eventid\":1}"), None);
        assert_eq!(find_seq(b""), None);
    }

    /// Chunked framing around the SSE stream, chunk boundaries inside SSE lines and the wire
    /// split at every point: chunk headers and CRLFs split across reads.
    #[test]
    fn chunked_sse_every_split() {
        let mut wire = Vec::new();
        for part in STREAM.chunks(37) {
            wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        for i in 0..=wire.len() {
            let mut dec = BodyDecoder::new(Framing::Chunked);
            let mut sse = SseParser::new();
            let mut got = Vec::new();
            for piece in [&wire[..i], &wire[i..]] {
                dec.feed(piece, &mut |s| sse.feed(s, &mut |e| got.push(e)))
                    .unwrap();
            }
            assert_eq!(got, expected(), "split at {i}");
            assert!(dec.is_done());
        }
    }
}
