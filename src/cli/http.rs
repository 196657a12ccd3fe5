//! The one HTTP GET the CLI needs (`cluster health`).
//!
//! Written by hand on a tokio TcpStream on purpose: a single plain-HTTP GET of a status
//! endpoint does not justify a heavy HTTP client dependency (reqwest/hyper + TLS).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::io_reason;
use super::errors::one_line;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Status endpoints answer a few bytes; never buffer more than this.
const MAX_RESPONSE: u64 = 64 * 1024;

/// An `http://host[:port][/base]` URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` to connect to.
    pub addr: String,
    /// Value of the Host header.
    pub host: String,
    /// Path prefix without a trailing slash (may be empty).
    pub base: String,
}

pub fn parse_url(url: &str) -> Result<HttpUrl> {
    let bad = || {
        anyhow!("invalid admin URL '{url}': use http://host:port, e.g. --admin-url http://127.0.0.1:9644")
    };
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        bail!(
            "the CLI speaks only plain HTTP to the admin API ('{url}'): use an http:// --admin-url"
        );
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    // host, [v6], host:port, [v6]:port
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let addr = if has_port {
        let port = authority.rsplit(':').next().unwrap_or("");
        if port.parse::<u16>().is_err() {
            return Err(bad());
        }
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(HttpUrl {
        addr,
        host: authority.to_string(),
        base: path.trim_end_matches('/').to_string(),
    })
}

/// The status code and (if not chunked) body of `GET {base}{path}`.
pub async fn get(url: &HttpUrl, path: &str, what_to_do: &str) -> Result<(u16, String)> {
    let full = format!("http://{}{}{}", url.host, url.base, path);
    let work = async {
        let mut stream = TcpStream::connect(&url.addr).await?;
        let request = format!(
            "GET {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: icestream-cli\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.base, path, url.host
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(TIMEOUT, work).await {
        Err(_) => bail!(
            "cannot reach the admin API at {full} (no answer within {} s): {what_to_do}",
            TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => bail!(
            "cannot reach the admin API at {full} ({}): {what_to_do}",
            io_reason(&e)
        ),
        Ok(Ok(r)) => r,
    };
    parse_response(&response)
        .ok_or_else(|| anyhow!("the admin API at {full} did not answer HTTP: check --admin-url"))
}

/// Status code and body of a raw HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let mut status = lines.next()?.split_whitespace();
    if !status.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = status.next()?.parse::<u16>().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        String::new()
    } else {
        one_line(body)
    };
    Some((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:9644").expect("url");
        assert_eq!(u.addr, "127.0.0.1:9644");
        assert_eq!(u.host, "127.0.0.1:9644");
        assert_eq!(u.base, "");
        let u = parse_url("http://admin.local/prefix/").expect("url");
        assert_eq!(u.addr, "admin.local:80");
        assert_eq!(u.base, "/prefix");
        let u = parse_url("http://[::1]:9644").expect("url");
        assert_eq!(u.addr, "[::1]:9644");
        assert_eq!(parse_url("http://[::1]").expect("url").addr, "[::1]:80");
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("127.0.0.1:9644").is_err());
        assert!(parse_url("http://x:notaport").is_err());
        assert!(parse_url("http://").is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Some((200, "ok".into()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            Some((503, String::new()))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_response(b""), None);
    }
}
