//! Accepting connections. Each new connection's first request is read here: an event-stream
//! request (`/graphql` accepting `text/event-stream`) is answered on a lean HTTP/1.1 path that
//! holds no buffers while the stream idles; every other connection goes to hyper (through
//! axum) with the bytes already read replayed in front of the socket.
//!
//! Why: hyper keeps an 8 KB read buffer and an 8 KB write buffer for the whole life of an
//! HTTP/1 connection. For a subscriber that receives a few messages a minute for ten minutes,
//! those 16 KB were three quarters of its memory. The lean path parses the request head with
//! `httparse`, runs the request through the same router (so the same middleware, credentials,
//! limits and logging apply), writes the response head, then each body frame as one chunk of
//! `Transfer-Encoding: chunked`, and closes the connection when the response ends (the stream
//! has said `complete`; a client reconnects anyway). Anything it does not handle plainly, such
//! as a chunked request body, `Expect`, `Upgrade`, pipelined bytes, HTTP/1.0 or HTTP/2, goes to
//! hyper untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The longest request head the lean path reads before handing the connection to hyper, which
/// applies its own limits.
const MAX_HEAD: usize = 16 * 1024;
/// Request headers the lean path parses; more go to hyper.
const MAX_HEADERS: usize = 48;
/// How long a new connection may take to send its first request head (and, on the lean path,
/// its body) before it is closed.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body the lean path reads; a larger one goes to hyper. The router's own
/// body limit applies on both paths.
const MAX_BODY: usize = 1024 * 1024;

/// The connections hyper serves, as an axum [`axum::serve::Listener`]; the lean ones never
/// reach it. Dropping it stops the accept loop.
pub struct Divert {
    connections: mpsc::Receiver<(Rewind, SocketAddr)>,
    local: SocketAddr,
}

/// Held (never sent on) by every lean connection until it ends.
type LeanTracker = mpsc::Sender<()>;

/// Waits for the lean connections.
pub struct LeanWaiter(mpsc::Receiver<()>);

impl LeanWaiter {
    /// Returns when every lean connection has ended.
    pub async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

/// Starts accepting on `listener`: lean connections are served on their own tasks, the others
/// are handed out by the returned [`Divert`].
pub fn divert(listener: TcpListener, router: Router) -> io::Result<(Divert, LeanWaiter)> {
    let local = listener.local_addr()?;
    let (to_hyper, connections) = mpsc::channel(64);
    let (tracker, waiter) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = to_hyper.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
            };
            // Without TCP_NODELAY a response's last partial segment can wait for the client's
            // delayed ACK (40 ms on Linux): every reply that ends in a small write would pay it.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
            let first = FirstRequest {
                to_hyper: to_hyper.clone(),
                tracker: tracker.clone(),
                router: router.clone(),
            };
            tokio::spawn(first.serve(stream, peer));
        }
    });
    Ok((Divert { connections, local }, LeanWaiter(waiter)))
}

impl axum::serve::Listener for Divert {
    type Io = Rewind;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended, which it does only after this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// As `axum::serve` does: errors of one connection are ignored, others (e.g. out of file
/// descriptors) are logged and accepting pauses a second, so the loop does not spin.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

struct FirstRequest {
    to_hyper: mpsc::Sender<(Rewind, SocketAddr)>,
    tracker: LeanTracker,
    router: Router,
}

impl FirstRequest {
    /// Reads the first request; serves it lean or hands the connection to hyper.
    async fn serve(self, mut stream: TcpStream, peer: SocketAddr) {
        let mut buf = BytesMut::with_capacity(1024);
        let read = tokio::select! {
            // Shutting down: an idle connection that has not sent a request yet is closed.
            () = self.to_hyper.closed() => return,
            read = tokio::time::timeout(HEAD_TIMEOUT, read_first(&mut stream, &mut buf)) => read,
        };
        let (request, body) = match read {
            // Nothing usable within the time limit, or the client went away.
            Err(_) | Ok(None) => return,
            Ok(Some(Decision::Lean {
                request, head_len, ..
            })) => (request, buf.split_off(head_len).freeze()),
            Ok(Some(_)) => {
                let connection = Rewind::new(stream, buf.freeze());
                // Fails only when shutting down; the connection is dropped then.
                let _ = self.to_hyper.send((connection, peer)).await;
                return;
            }
        };
        drop(buf);
        let Self {
            to_hyper,
            tracker,
            router,
        } = self;
        drop(to_hyper);
        let (parts, ()) = (*request).into_parts();
        let mut request = http::Request::from_parts(parts, Body::from(body));
        request.extensions_mut().insert(ConnectInfo(peer));
        let Ok(response) = router.oneshot(request).await;
        if let Err(e) = respond(&mut stream, response).await {
            tracing::debug!(%peer, "event stream connection ended: {e}");
        }
        drop(tracker);
    }
}

/// Reads until `buf` holds a whole lean request (head and body), or enough to tell that hyper
/// should serve the connection. `None` when the client closes or fails first.
async fn read_first(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Decision> {
    loop {
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        match classify(buf) {
            Decision::Incomplete if buf.len() < MAX_HEAD => {}
            Decision::Lean {
                head_len, body_len, ..
            } if buf.len() < head_len + body_len => {}
            Decision::Incomplete => return Some(Decision::Hyper),
            decision => return Some(decision),
        }
    }
}

/// What to do with a connection, from the bytes of its first request read so far.
#[derive(Debug)]
enum Decision {
    /// The head is not complete yet.
    Incomplete,
    /// Serve on the lean path: the head is `head_len` bytes, the body `body_len`.
    Lean {
        request: Box<http::Request<()>>,
        head_len: usize,
        body_len: usize,
    },
    /// Anything else: hyper serves it.
    Hyper,
}

fn classify(buf: &[u8]) -> Decision {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Decision::Incomplete,
        Err(_) => return Decision::Hyper,
    };
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Decision::Hyper;
    };
    if !matches!(method, "GET" | "POST") || path.split('?').next() != Some("/graphql") {
        return Decision::Hyper;
    }
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .version(http::Version::HTTP_11);
    let mut event_stream = false;
    let mut body_len = 0;
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Decision::Hyper;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(len) if len <= MAX_BODY => body_len = len,
                _ => return Decision::Hyper,
            }
        }
        if name.eq_ignore_ascii_case("accept")
            && header
                .value
                .windows(b"text/event-stream".len())
                .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
        {
            event_stream = true;
        }
        builder = builder.header(name, header.value);
    }
    if !event_stream {
        return Decision::Hyper;
    }
    // Bytes after the body would be a pipelined request: hyper answers those in order.
    if buf.len() > head_len + body_len {
        return Decision::Hyper;
    }
    match builder.body(()) {
        Ok(request) => Decision::Lean {
            request: Box::new(request),
            head_len,
            body_len,
        },
        // A header name or value `http` refuses: hyper gives the client its error.
        Err(_) => Decision::Hyper,
    }
}

/// Writes `response`: the head, then the body, as one chunk per frame unless its length is
/// known; the connection closes after it. Stops early when the client goes away.
async fn respond(stream: &mut TcpStream, response: http::Response<Body>) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let exact = http_body::Body::size_hint(&body).exact();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\n");
    drop(parts);
    if let Some(len) = exact {
        head.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        head.extend_from_slice(&body);
        stream.write_all(&head).await?;
        return stream.shutdown().await;
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    stream.write_all(&head).await?;
    drop(head);
    loop {
        // The next body frame; meanwhile, bytes or the end of file from the client (polled
        // in place: no future to make and drop per frame).
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = http_body::Body::poll_frame(Pin::new(&mut body), cx) {
                return Poll::Ready(Next::Frame(frame));
            }
            match stream.poll_read_ready(cx) {
                Poll::Ready(ready) => Poll::Ready(Next::Readable(ready)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let frame = match next {
            Next::Frame(frame) => frame,
            Next::Readable(ready) => {
                ready?;
                client_gone(stream)?;
                continue;
            }
        };
        match frame {
            None => {
                stream.write_all(b"0\r\n\r\n").await?;
                return stream.shutdown().await;
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: not sent
                };
                if data.is_empty() {
                    continue;
                }
                write_chunk(stream, &data).await?;
            }
        }
    }
}

/// What the response loop waits for.
enum Next<F> {
    /// The body's next frame, or its end.
    Frame(Option<F>),
    /// The client sent something, closed, or failed.
    Readable(io::Result<()>),
}

/// Writes `data` as one chunk of `Transfer-Encoding: chunked`: the size line, the data and the
/// closing CRLF in one `writev`, without copying the data (the socket nearly always takes it
/// all; the rest of a partial write is copied once).
async fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut line = [0u8; 20];
    let line = chunk_line(data.len(), &mut line);
    let parts = [
        io::IoSlice::new(line),
        io::IoSlice::new(data),
        io::IoSlice::new(b"\r\n"),
    ];
    let total = line.len() + data.len() + 2;
    let written = stream.write_vectored(&parts).await?;
    if written < total {
        let all = [line, data, b"\r\n"].concat();
        stream.write_all(&all[written..]).await?;
    }
    Ok(())
}

/// The size line of a chunk of `len` bytes (`1f4\r\n`), in `buf`.
fn chunk_line(len: usize, buf: &mut [u8; 20]) -> &[u8] {
    let digits = format_args!("{len:x}\r\n");
    let mut cursor = io::Cursor::new(&mut buf[..]);
    // 16 hex digits and CRLF always fit.
    let _ = io::Write::write_fmt(&mut cursor, digits);
    let end = cursor.position() as usize;
    &buf[..end]
}

/// After the request, a client has nothing more to send: end of file means it went away, so the
/// stream stops now rather than at its next write. Other bytes are ignored.
fn client_gone(stream: &TcpStream) -> io::Result<()> {
    let mut scratch = [0u8; 128];
    match stream.try_read(&mut scratch) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client closed the connection",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// A socket with bytes already read from it put back in front.
pub struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    fn new(inner: TcpStream, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                self.prefix = Bytes::new(); // frees the read bytes
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(raw: &str) -> Decision {
        classify(raw.as_bytes())
    }

    #[test]
    fn event_stream_requests_go_lean() {
        let get = "GET /graphql?query=x HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n";
        let Decision::Lean {
            request,
            head_len,
            body_len,
        } = decide(get)
        else {
            panic!("GET should go lean");
        };
        assert_eq!((head_len, body_len), (get.len(), 0));
        assert_eq!(request.uri(), "/graphql?query=x");
        assert_eq!(request.headers()["host"], "a");
        let post =
            "POST /graphql HTTP/1.1\r\naccept: Text/Event-Stream\r\ncontent-length: 4\r\n\r\n{}";
        match decide(post) {
            Decision::Lean { body_len: 4, .. } => {}
            other => panic!("POST should go lean with 4 body bytes, got {other:?}"),
        }
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for raw in [
            "GET /graphql?query=x HTTP/1.1\r\nAccept: application/json\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "GET /graphql HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            "PUT /graphql HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\ncontent-length: 9999999\r\n\r\n",
            "POST /graphql HTTP/1.1\r\nAccept: text/event-stream\r\ncontent-length: x\r\n\r\n",
            "GET /graphql HTTP/1.1\r\nAccept: text/event-stream\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\x16\x03\x01garbage",
        ] {
            assert!(
                matches!(decide(raw), Decision::Hyper),
                "{raw:?} should go to hyper"
            );
        }
        assert!(matches!(
            decide("GET /graphql HTTP/1.1\r\nAccept: text/ev"),
            Decision::Incomplete
        ));
    }

    #[test]
    fn chunk_lines_give_the_size_in_hex() {
        let mut buf = [0; 20];
        assert_eq!(chunk_line(13, &mut buf), b"d\r\n");
        assert_eq!(chunk_line(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
    }
}
