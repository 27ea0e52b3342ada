//! The API's connections, wrapped so that hyper's own refusals carry an error body.
//!
//! hyper answers a request it cannot parse by itself, before any route or layer runs:
//! a request line with a character that must be percent-encoded (an unencoded
//! `?subject=topology.>`), a malformed header, a bad method (400), a URI too long
//! (414), or more than 100 headers or about 400 KiB of them (431). Its answer has an
//! empty body, and then it closes the connection. [`Explained`] recognises that
//! answer as it is written and writes the usual `{"error": {"code", "message"}}`
//! answer in its place.
//!
//! ## How the answer is recognised
//! A write that is exactly one response head, with status 400, 414 or 431 and
//! `content-length: 0`, and nothing after it. The API's own 4xx answers always carry
//! a JSON body (so their `content-length` is never 0), and no body the API sends
//! starts with `HTTP/1.`, so nothing else matches.
//!
//! Every response passes through here, and the first write of each starts with
//! `HTTP/1.`, so a write is looked at only if it is short (at most 512 bytes) and its
//! status bytes say 400, 414 or 431. Anything else (a large body, a 200) is passed on
//! without being copied or decoded.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A [`Listener`] whose connections are [`Explained`].
#[derive(Debug)]
pub struct ExplainedListener<L>(pub L);

impl<L: Listener> Listener for ExplainedListener<L> {
    type Io = Explained<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (Explained::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose bodiless parse-error answers from hyper are replaced with a
/// JSON error answer (see the module docs). Reads pass through untouched.
#[derive(Debug)]
pub struct Explained<IO> {
    inner: IO,
    /// The replacement answer, and how much of it the connection has taken so far.
    replacement: Vec<u8>,
    written: usize,
}

impl<IO> Explained<IO> {
    /// Wraps `inner`, a freshly accepted connection.
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            replacement: Vec::new(),
            written: 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Explained<IO> {
    /// Writes what is left of a replacement answer before anything else.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.replacement.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.replacement[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.replacement.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Explained<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Explained<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(answer) = explained(buf) {
            self.replacement = answer;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(answer) = explained_vectored(bufs) {
            self.replacement = answer;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The longest write [`Explained`] looks at. hyper's refusal is a status line,
/// `content-length: 0` and `date` (about 100 bytes); a write longer than this is never
/// one.
const MAX_REFUSAL_LEN: usize = 512;

/// Where the status code ends in `HTTP/1.1 NNN`.
const STATUS_END: usize = 12;

/// Whether a write of `len` bytes that starts with `start` can be one of hyper's
/// refusals: short, and `HTTP/1.x` with status 400, 414 or 431. It reads 12 bytes at
/// most, so the writes of every other response cost next to nothing.
fn may_be_refusal(len: usize, start: &[u8]) -> bool {
    len <= MAX_REFUSAL_LEN
        && start.starts_with(b"HTTP/1.")
        && start
            .get(9..STATUS_END)
            .is_some_and(|status| matches!(status, b"400" | b"414" | b"431"))
}

/// [`explained`] for a vectored write: the slices are joined only once the write's
/// length and first 12 bytes pass [`may_be_refusal`].
fn explained_vectored(bufs: &[io::IoSlice<'_>]) -> Option<Vec<u8>> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    if len > MAX_REFUSAL_LEN {
        return None;
    }
    let mut start = [0u8; STATUS_END];
    let mut taken = 0;
    for (to, from) in start.iter_mut().zip(bufs.iter().flat_map(|b| b.iter())) {
        *to = *from;
        taken += 1;
    }
    if !may_be_refusal(len, &start[..taken]) {
        return None;
    }
    explained(
        &bufs
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect::<Vec<u8>>(),
    )
}

/// The JSON answer to write instead of `written`, if `written` is exactly one of
/// hyper's bodiless parse-error answers.
fn explained(written: &[u8]) -> Option<Vec<u8>> {
    if !may_be_refusal(written.len(), written) {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.strip_prefix("HTTP/1.")?.get(2..5)?;
    let (code, message) = refusal(status)?;
    let headers: Vec<&str> = lines.collect();
    if !headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let body = json!({ "error": { "code": code, "message": message } }).to_string();
    let mut answer = format!("{status_line}\r\n");
    for header in headers.iter().filter(|h| {
        let name = h.split(':').next().unwrap_or_default();
        !["content-length", "content-type", "connection"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
    }) {
        answer.push_str(header);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

/// The error code and message for a status hyper answers by itself.
fn refusal(status: &str) -> Option<(&'static str, &'static str)> {
    Some(match status {
        "400" => (
            "bad_request",
            "the request is not valid HTTP/1.1: a malformed request line, method or header. \
             In a path or query, characters such as spaces, `\"`, `<`, `>` and `` ` `` must be \
             percent-encoded: `?subject=topology.%3E` for `topology.>`",
        ),
        "414" => (
            "uri_too_long",
            "the request's URI is longer than the server accepts (64 KiB)",
        ),
        "431" => (
            "headers_too_large",
            "the request's header block is larger than the server accepts: at most 100 \
             headers, about 400 KiB in all",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(written: &str) -> Option<String> {
        explained(written.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn gives_hypers_bodiless_refusal_a_json_body() {
        let hyper = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let replaced = answer(hyper).expect("replaced");
        let (head, body) = replaced.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("date: Thu, 01 Jan 2026"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(body["error"]["message"].as_str().unwrap().contains("%3E"));
        assert!(
            answer("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n")
                .is_some()
        );
    }

    #[test]
    fn leaves_every_other_write_alone() {
        for written in [
            // The API's own 400, which has a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK",
            "{\"error\": {}}",
            "",
        ] {
            assert_eq!(answer(written), None, "{written:?}");
        }
        // Longer than any of hyper's refusals: not even looked at.
        let padded = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-pad: {}\r\n\r\n",
            "a".repeat(MAX_REFUSAL_LEN)
        );
        assert_eq!(answer(&padded), None);
    }

    fn vectored(slices: &[&[u8]]) -> Option<Vec<u8>> {
        let bufs: Vec<io::IoSlice<'_>> = slices.iter().map(|s| io::IoSlice::new(s)).collect();
        explained_vectored(&bufs)
    }

    #[test]
    fn reads_a_vectored_refusal_across_its_slices() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        let (status_split, rest) = hyper.split_at(10);
        let replaced = vectored(&[b"", status_split, rest]).expect("replaced");
        assert_eq!(Some(replaced), explained(hyper));
        // A large answer, and a short one with another status, pass untouched.
        let body = vec![b'x'; 4096];
        assert_eq!(
            vectored(&[
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 4096\r\n\r\n",
                &body
            ]),
            None
        );
        assert_eq!(
            vectored(&[b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]),
            None
        );
        assert_eq!(vectored(&[b"HTTP/1.1 4"]), None);
    }
}
