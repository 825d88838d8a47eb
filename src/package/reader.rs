//! Streaming line reader over a package file, gzip or plain, with its SHA-256.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::{FORMAT, Header, PackageError};

/// Longest line accepted; a longer one is refused rather than read into memory.
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// Reads a package line by line, hashing the decompressed content as it goes.
pub struct PackageReader {
    file: String,
    reader: Box<dyn BufRead + Send>,
    hasher: Sha256,
    line_no: u64,
    buf: String,
    consumed: Arc<AtomicU64>,
}

/// Counts bytes read from the file on disk (compressed), for progress display.
struct Counting<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl PackageReader {
    /// Opens `path`; gzip is recognised by its magic bytes, whatever the file name.
    pub fn open(path: &Path) -> Result<Self, PackageError> {
        let name = path.display().to_string();
        let whole = |message: String| PackageError {
            file: name.clone(),
            line: 0,
            field: None,
            message,
        };
        let file = File::open(path).map_err(|e| whole(format!("cannot open: {e}")))?;
        let consumed = Arc::new(AtomicU64::new(0));
        let mut raw = BufReader::with_capacity(
            256 * 1024,
            Counting {
                inner: file,
                consumed: consumed.clone(),
            },
        );
        let magic = raw
            .fill_buf()
            .map_err(|e| whole(format!("cannot read: {e}")))?;
        let reader: Box<dyn BufRead + Send> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                MultiGzDecoder::new(raw),
            ))
        } else {
            Box::new(raw)
        };
        Ok(Self {
            file: name,
            reader,
            hasher: Sha256::new(),
            line_no: 0,
            buf: String::new(),
            consumed,
        })
    }

    /// The file name, as messages print it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Bytes of the file on disk read so far (shared, for a progress bar).
    pub fn consumed(&self) -> Arc<AtomicU64> {
        self.consumed.clone()
    }

    /// Builds an error at the current line.
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> PackageError {
        PackageError {
            file: self.file.clone(),
            line: self.line_no,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// Reads and checks the header line.
    pub fn read_header(&mut self) -> Result<Header, PackageError> {
        let Some(line) = self.next_line()?.map(|(_, l)| l.to_owned()) else {
            return Err(self.error(None, "empty package: no header line"));
        };
        let header: Header = serde_json::from_str(&line).map_err(|e| {
            self.error(None, format!("invalid header line: {e} (expected {{\"format\":\"{FORMAT}\",\"register\":...,\"sequence\":...,\"created\":...}})"))
        })?;
        if header.format != FORMAT {
            return Err(self.error(
                Some("format"),
                format!(
                    "unsupported format \"{}\" (expected \"{FORMAT}\")",
                    header.format
                ),
            ));
        }
        if header.sequence < 1 {
            return Err(self.error(Some("sequence"), "the sequence number must be 1 or more"));
        }
        Ok(header)
    }

    /// The next non-blank line (its 1-based number, and the text without its line ending), or
    /// `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>, PackageError> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            let read = (&mut self.reader).take(MAX_LINE).read_line(&mut self.buf);
            let n = read.map_err(|e| self.io_error(e))?;
            if n == 0 {
                self.line_no -= 1;
                return Ok(None);
            }
            if n as u64 == MAX_LINE && !self.buf.ends_with('\n') {
                return Err(self.error(None, format!("line longer than {} MiB", MAX_LINE >> 20)));
            }
            self.hasher.update(self.buf.as_bytes());
            let line = self.buf.trim_end_matches(['\n', '\r']);
            if !line.trim().is_empty() {
                let len = line.len();
                return Ok(Some((self.line_no, &self.buf[..len])));
            }
        }
    }

    fn io_error(&self, e: std::io::Error) -> PackageError {
        if e.kind() == std::io::ErrorKind::InvalidData {
            self.error(None, "not valid UTF-8")
        } else {
            self.error(
                None,
                format!("cannot read: {e} (truncated or corrupt file?)"),
            )
        }
    }

    /// Reads the rest of the file and returns the SHA-256 (hex) of the whole decompressed content.
    pub fn finish(mut self) -> Result<String, PackageError> {
        while self.next_line()?.is_some() {}
        Ok(hex::encode(self.hasher.finalize()))
    }
}
