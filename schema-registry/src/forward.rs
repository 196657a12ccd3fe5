//! Forwarding a write to the registry of the `_schemas` leader (cluster only): one HTTP/1.1
//! request per write over a fresh connection (`Connection: close`), the answer passed back
//! unchanged. Small on purpose: the peer is another Icestream registry, and writes are rare.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Marks a forwarded request, so a registry that is no longer the writer does not forward it
/// again (no loops while leadership moves).
pub const FORWARDED: &str = "x-icestream-forwarded";
/// On a writer's answer: the `_schemas` offset its state has applied after the write; the
/// forwarding registry waits until its own replica is there too.
pub const APPLIED: &str = "x-icestream-schemas-applied";

const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read back (registry answers are small; `GET /schemas` is never forwarded).
const MAX_RESPONSE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("bad registry URL {0}")]
    Url(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

/// The leader's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub applied: Option<i64>,
    pub body: Vec<u8>,
}

/// Sends `method path_and_query` with `body` to the registry at `base` (`http://host:port`).
pub async fn send(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    tokio::time::timeout(
        TIMEOUT,
        exchange(base, method, path_and_query, content_type, body),
    )
    .await
    .map_err(|_| ForwardError::Timeout)?
}

async fn exchange(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    let authority = base
        .strip_prefix("http://")
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| ForwardError::Url(base.to_string()))?;
    let mut s = tokio::net::TcpStream::connect(authority).await?;
    let mut req = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Length: {}\r\n{FORWARDED}: 1\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .await?;
    if raw.len() > MAX_RESPONSE {
        return Err(ForwardError::Malformed("answer too large"));
    }
    parse(&raw)
}

/// Parses a complete HTTP/1.1 response (read to EOF).
fn parse(raw: &[u8]) -> Result<Answer, ForwardError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ForwardError::Malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ForwardError::Malformed("headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(ForwardError::Malformed("status line"))?;
    let (mut content_type, mut applied, mut length, mut chunked) = (None, None, None, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(v.to_string()),
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            k if k == APPLIED => applied = v.parse::<i64>().ok(),
            _ => {}
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err(ForwardError::Malformed("short body")),
            None => rest.to_vec(),
        }
    };
    Ok(Answer {
        status,
        content_type,
        applied,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ForwardError> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ForwardError::Malformed("chunk size"))?;
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .ok_or(ForwardError::Malformed("chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(ForwardError::Malformed("short chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let a = parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-icestream-schemas-applied: 7\r\ncontent-length: 8\r\n\r\n{\"id\":1}",
        )
        .unwrap();
        assert_eq!((a.status, a.applied), (200, Some(7)));
        assert_eq!(a.body, b"{\"id\":1}");
        let a = parse(b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (409, &b"abcde"[..]));
        for bad in [
            &b"garbage"[..],
            b"HTTP/1.1 x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse(bad).is_err());
        }
    }
}
