//! The HTTP/1.1 side: the request, the response head, and an incremental body decoder
//! (chunked, content-length or close-delimited) that hands out slices of its input, no copies.

/// `http://host[:port]/path[?query]`, split into what a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` to resolve (brackets kept for IPv6 literals).
    pub connect: String,
    /// The Host header's value: the URL's authority as written.
    pub authority: String,
    /// Path plus any query the URL already had.
    pub path_and_query: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {url:?}"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("bad host in URL {url:?}"));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let connect = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Url {
        connect,
        authority: authority.to_string(),
        path_and_query: path,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request every client sends (built once, shared).
pub fn build_request(url: &Url, query: &str) -> Vec<u8> {
    let sep = if url.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "GET {}{sep}query={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        url.path_and_query,
        percent_encode(query),
        url.authority
    )
    .into_bytes()
}

/// The end of the response head (index just past `\r\n\r\n`), if it is all in `buf`.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_type: Option<String>,
    pub framing: Framing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// Parses a complete response head (status line and headers, up to the blank line).
pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1.x response: {:?}",
            truncate(status_line, 80)
        ));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {:?}", truncate(status_line, 80)))?;
    let mut content_type = None;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Head {
        status,
        content_type,
        framing,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line: hex digits, then anything (extensions) up to `\n`.
    Size {
        value: u64,
        digits: u32,
        in_ext: bool,
    },
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: expecting `\r\n`.
    DataEnd {
        seen_cr: bool,
    },
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailer {
        line_len: usize,
    },
    /// A content-length body, this many bytes left.
    Length(u64),
    /// Everything until the peer closes.
    UntilClose,
    Done,
}

/// Incremental body decoder: feed it whatever a read returned; the body's bytes come out as
/// slices of the input, in order, however the framing was split across reads.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Size {
                value: 0,
                digits: 0,
                in_ext: false,
            },
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// The body has ended by its framing (last chunk and trailers, or content-length reached).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the peer closing the connection now ends the body cleanly.
    pub fn eof_ok(&self) -> bool {
        matches!(self.state, State::Done | State::UntilClose)
    }

    /// Decodes `input`, calling `out` with each run of body bytes. Bytes after the body's end
    /// are ignored.
    pub fn feed<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<(), String> {
        while !input.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::UntilClose => {
                    out(input);
                    return Ok(());
                }
                State::Length(left) | State::Data(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    out(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Data(_) => State::DataEnd { seen_cr: false },
                            _ => State::Done,
                        };
                    }
                }
                State::DataEnd { seen_cr } => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\r' if !*seen_cr => *seen_cr = true,
                        b'\n' => {
                            self.state = State::Size {
                                value: 0,
                                digits: 0,
                                in_ext: false,
                            }
                        }
                        _ => {
                            return Err(format!(
                                "chunked: expected CRLF after chunk data, got byte 0x{b:02x}"
                            ));
                        }
                    }
                }
                State::Size {
                    value,
                    digits,
                    in_ext,
                } => {
                    let b = input[0];
                    input = &input[1..];
                    if b == b'\n' {
                        if *digits == 0 {
                            return Err("chunked: empty chunk-size line".into());
                        }
                        self.state = if *value == 0 {
                            State::Trailer { line_len: 0 }
                        } else {
                            State::Data(*value)
                        };
                    } else if *in_ext || b == b'\r' {
                        // extensions and the CR before LF: skipped
                    } else if let Some(d) = (b as char).to_digit(16) {
                        if *digits >= 15 {
                            return Err("chunked: chunk size too large".into());
                        }
                        *value = *value * 16 + d as u64;
                        *digits += 1;
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        *in_ext = true;
                    } else {
                        return Err(format!("chunked: bad byte 0x{b:02x} in chunk size"));
                    }
                }
                State::Trailer { line_len } => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\n' if *line_len == 0 => self.state = State::Done,
                        b'\n' => *line_len = 0,
                        b'\r' => {}
                        _ => *line_len += 1,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(framing: Framing, wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut dec = BodyDecoder::new(framing);
        let mut body = Vec::new();
        for part in wire.chunks(piece) {
            dec.feed(part, &mut |s| body.extend_from_slice(s)).unwrap();
        }
        (body, dec.is_done())
    }

    #[test]
    fn chunked_any_split() {
        let wire =
            b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nGARBAGE";
        for piece in 1..=wire.len() {
            let (body, done) = decode_in_pieces(Framing::Chunked, wire, piece);
            assert_eq!(body, b"hello 0123456789", "piece size {piece}");
            assert!(done, "piece size {piece}");
        }
    }

    #[test]
    fn chunked_uppercase_hex_and_bare_lf() {
        let wire = b"1A\n abcdefghijklmnopqrstuvwxy\n0\n\n";
        let (body, done) = decode_in_pieces(Framing::Chunked, wire, 3);
        assert_eq!(body, b" abcdefghijklmnopqrstuvwxy");
        assert!(done);
    }

    #[test]
    fn chunked_not_done_mid_stream() {
        let mut dec = BodyDecoder::new(Framing::Chunked);
        let mut body = Vec::new();
        dec.feed(b"3\r\nabc\r\n4\r\nde", &mut |s| body.extend_from_slice(s))
            .unwrap();
        assert_eq!(body, b"abcde");
        assert!(!dec.is_done() && !dec.eof_ok());
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut dec = BodyDecoder::new(Framing::Chunked);
        assert!(dec.feed(b"zz\r\n", &mut |_| {}).is_err());
        let mut dec = BodyDecoder::new(Framing::Chunked);
        assert!(dec.feed(b"3\r\nabcX", &mut |_| {}).is_err());
    }

    #[test]
    fn length_and_close() {
        let (body, done) = decode_in_pieces(Framing::Length(5), b"helloEXTRA", 2);
        assert_eq!(body, b"hello");
        assert!(done);
        let (body, done) = decode_in_pieces(Framing::UntilClose, b"all of it", 4);
        assert_eq!(body, b"all of it");
        assert!(!done);
        assert!(BodyDecoder::new(Framing::UntilClose).eof_ok());
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
    }

    #[test]
    fn head() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.content_type.as_deref(), Some("text/event-stream"));
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_head(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").unwrap();
        assert_eq!((h.status, h.framing), (400, Framing::Length(12)));
        let h = parse_head(
            b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert_eq!(
            find_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"),
            Some(25)
        );
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
    }

    #[test]
    fn urls_and_request() {
        let u = parse_url("http://127.0.0.1:8080/graphql").unwrap();
        assert_eq!(u.connect, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/graphql");
        let u = parse_url("http://localhost").unwrap();
        assert_eq!(
            (u.connect.as_str(), u.path_and_query.as_str()),
            ("localhost:80", "/")
        );
        let u = parse_url("http://[::1]:9/g?x=1").unwrap();
        assert_eq!(
            (u.connect.as_str(), u.authority.as_str()),
            ("[::1]:9", "[::1]:9")
        );
        let u = parse_url("http://[::1]").unwrap();
        assert_eq!(u.connect, "[::1]:80");
        assert!(parse_url("https://example.org/").is_err());
        let req = build_request(
            &parse_url("http://127.0.0.1:1/graphql").unwrap(),
            "subscription { A { b } }",
        );
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET /graphql?query=subscription%20%7B%20A%20%7B%20b%20%7D%20%7D HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: text/event-stream\r\n\r\n"
        );
        let req = build_request(&parse_url("http://h:1/g?a=b").unwrap(), "q");
        assert!(
            String::from_utf8(req)
                .unwrap()
                .starts_with("GET /g?a=b&query=q HTTP/1.1\r\n")
        );
    }
}
