//! The few HTTP requests the CLI needs: `cluster health` (admin API) and `schema ...` (the
//! schema registry's REST API).
//!
//! Written by hand on a tokio TcpStream on purpose: a handful of HTTP/1.1 requests with small
//! JSON bodies do not justify a heavy HTTP client (reqwest/hyper). https URLs go through the
//! same rustls settings as the Kafka connections (`--tls-ca-file`, the client certificate).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::io_reason;
use super::errors::one_line;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Status endpoints answer a few bytes; never buffer more than this.
const MAX_STATUS_RESPONSE: u64 = 64 * 1024;
/// Registry answers hold schemas; never buffer more than this.
const MAX_RESPONSE: u64 = 32 * 1024 * 1024;
/// The schema registry's own content type (Confluent's).
pub const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// An `http://host[:port][/base]` URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` to connect to.
    pub addr: String,
    /// Value of the Host header.
    pub host: String,
    /// Path prefix without a trailing slash (may be empty).
    pub base: String,
    /// `Authorization` header value sent with every request (`--user`/`--password`).
    pub authorization: Option<String>,
    /// An https URL.
    pub https: bool,
    /// The TLS files to use for https (`--tls-ca-file`, `--tls-cert-file`, `--tls-key-file`);
    /// none: the system's CA certificates.
    pub tls_files: TlsFiles,
}

/// The client's TLS files, for https.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Trust exactly this certificate ([`super::ClientArgs::http_pinned_cert`]).
    pub pinned: Option<std::path::PathBuf>,
}

impl HttpUrl {
    /// With HTTP Basic credentials from `--user` and `--password` (or ICESTREAM_PASSWORD),
    /// or the bearer token with `--sasl-mechanism OAUTHBEARER`, and the TLS files for an
    /// https URL.
    pub fn with_auth(mut self, args: &super::ClientArgs) -> Self {
        if args.sasl_mechanism == Some(super::sasl::SaslMechanism::OAuthBearer) {
            if let Some(token) = &args.password {
                self.authorization = Some(format!("Bearer {token}"));
            }
        } else if let Some(user) = &args.user {
            let password = args.password.as_deref().unwrap_or("");
            self.authorization = Some(engine::security::http_auth::basic_header(user, password));
        }
        self.tls_files = TlsFiles {
            ca: args.tls_ca_file.clone(),
            cert: args.tls_cert_file.clone(),
            key: args.tls_key_file.clone(),
            pinned: args.http_pinned_cert.clone(),
        };
        self
    }

    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The rustls settings for this https URL.
    fn tls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>> {
        let args = super::ClientArgs {
            tls: true,
            tls_ca_file: self.tls_files.ca.clone(),
            tls_cert_file: self.tls_files.cert.clone(),
            tls_key_file: self.tls_files.key.clone(),
            tls_pinned_cert: self.tls_files.pinned.clone(),
            ..super::ClientArgs::defaults()
        };
        super::tls::client_config(&args)?
            .ok_or_else(|| anyhow!("internal error: no TLS settings for an https URL: retry"))
    }
}

/// Which HTTP service a URL points at, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// e.g. "admin API".
    pub name: &'static str,
    /// The flag that sets its URL, e.g. "--admin-url".
    pub flag: &'static str,
    /// An example URL.
    pub example: &'static str,
}

pub const ADMIN_API: Service = Service {
    name: "admin API",
    flag: "--admin-url",
    example: "http://127.0.0.1:9644",
};

pub const CONNECT: Service = Service {
    name: "Kafka Connect REST API",
    flag: "--connect-url",
    example: "connect=http://127.0.0.1:8083",
};

pub const SCHEMA_REGISTRY: Service = Service {
    name: "schema registry",
    flag: "--schema-registry-url",
    example: "http://127.0.0.1:8081",
};

pub fn parse_url(url: &str) -> Result<HttpUrl> {
    parse_service_url(url, ADMIN_API)
}

pub fn parse_service_url(url: &str, svc: Service) -> Result<HttpUrl> {
    let bad = || {
        anyhow!(
            "invalid {} URL '{url}': use http://host:port or https://host:port, e.g. {} {}",
            svc.name,
            svc.flag,
            svc.example
        )
    };
    let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, true)
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
    } else if https {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    };
    Ok(HttpUrl {
        addr,
        host: authority.to_string(),
        base: path.trim_end_matches('/').to_string(),
        authorization: None,
        https,
        tls_files: TlsFiles::default(),
    })
}

/// The status code and body (on one line) of `GET {base}{path}` on the admin API.
pub async fn get(url: &HttpUrl, path: &str, what_to_do: &str) -> Result<(u16, String)> {
    let (status, body) = send(
        url,
        ADMIN_API,
        "GET",
        path,
        None,
        MAX_STATUS_RESPONSE,
        what_to_do,
    )
    .await?;
    Ok((status, one_line(&body)))
}

/// The status code and body of `{method} {base}{path}` with an optional JSON body, sent as
/// the schema registry's content type.
pub async fn request(
    url: &HttpUrl,
    svc: Service,
    method: &str,
    path: &str,
    body: Option<&str>,
    what_to_do: &str,
) -> Result<(u16, String)> {
    send(url, svc, method, path, body, MAX_RESPONSE, what_to_do).await
}

async fn send(
    url: &HttpUrl,
    svc: Service,
    method: &str,
    path: &str,
    body: Option<&str>,
    max: u64,
    what_to_do: &str,
) -> Result<(u16, String)> {
    let full = format!("{}://{}{}", url.scheme(), url.host, url.base);
    let tls = if url.https {
        Some(url.tls_config()?)
    } else {
        None
    };
    let work = async {
        let tcp = match TcpStream::connect(&url.addr).await {
            Ok(s) => s,
            Err(e) => {
                return Err(anyhow!(
                    "cannot reach the {} at {full} ({}): {what_to_do}",
                    svc.name,
                    io_reason(&e)
                ))
            }
        };
        let mut stream: Box<dyn super::tls::Io> = match &tls {
            Some(config) => {
                let hint = format!("is it plain http? use an http:// {}", svc.flag);
                super::tls::handshake(config, tcp, &url.addr, &format!("the {}", svc.name), &hint)
                    .await?
            }
            None => Box::new(tcp),
        };
        let mut request = format!(
            "{method} {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: icestream-cli\r\nAccept: {REGISTRY_CONTENT_TYPE}, application/json, */*\r\nConnection: close\r\n",
            url.base, path, url.host
        );
        if let Some(a) = &url.authorization {
            request.push_str(&format!("Authorization: {a}\r\n"));
        }
        // Kafka Connect accepts only application/json bodies; the registry its own type.
        let content_type = if svc.name == CONNECT.name {
            "application/json"
        } else {
            REGISTRY_CONTENT_TYPE
        };
        match body {
            Some(b) => request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None if method != "GET" => request.push_str("Content-Length: 0\r\n\r\n"),
            None => request.push_str("\r\n"),
        }
        let mut response = Vec::new();
        let io = async {
            stream.write_all(request.as_bytes()).await?;
            (&mut stream).take(max).read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(())
        };
        match io.await {
            Ok(()) => Ok(response),
            // A server that closes without TLS's close_notify may still have sent its whole
            // answer; parse_response refuses one cut short.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                Ok(response)
            }
            Err(e) => Err(anyhow!(
                "cannot reach the {} at {full} ({}): {what_to_do}",
                svc.name,
                super::tls::stream_hint(&e).unwrap_or_else(|| io_reason(&e))
            )),
        }
    };
    let response = match tokio::time::timeout(TIMEOUT, work).await {
        Err(_) => bail!(
            "cannot reach the {} at {full} (no answer within {} s): {what_to_do}",
            svc.name,
            TIMEOUT.as_secs()
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(r)) => r,
    };
    parse_response(&response).ok_or_else(|| {
        anyhow!(
            "the {} at {full} did not answer HTTP: check {}",
            svc.name,
            svc.flag
        )
    })
}

/// Status code and body of a raw HTTP/1.x response (Content-Length, chunked, or up to the
/// end of the connection).
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &raw[raw.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let mut status = lines.next()?.split_whitespace();
    if !status.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = status.next()?.parse::<u16>().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name == "content-length" {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)?.to_vec()
    } else {
        body.to_vec()
    };
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a chunked body; `None` when it is cut short or malformed.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&body[..end]).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        body = &body[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size..)?;
        body = body.strip_prefix(b"\r\n")?;
    }
}

/// Percent-encodes one path segment (a subject name may hold `/`, spaces, ...).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let u = parse_url("https://x:1").expect("https");
        assert!(u.https);
        assert_eq!(parse_url("https://x").expect("url").addr, "x:443");
        assert!(parse_url("127.0.0.1:9644").is_err());
        assert!(parse_url("http://x:notaport").is_err());
        assert!(parse_url("http://").is_err());
        let e = parse_service_url("localhost:8081", SCHEMA_REGISTRY).expect_err("bad");
        assert!(e.to_string().contains("--schema-registry-url"), "{e}");
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Some((200, "ok".into()))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_response(b""), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Some((204, String::new()))
        );
    }

    #[test]
    fn content_length_bodies() {
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: 44\r\n\r\n{\"error_code\":40401,\"message\":\"not found\"}\r\n";
        let (code, body) = parse_response(raw).expect("parsed");
        assert_eq!(code, 404);
        assert_eq!(body, "{\"error_code\":40401,\"message\":\"not found\"}\r\n");
        // Bytes past Content-Length are not part of the body.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]garbage"),
            Some((200, "[1]".into()))
        );
        // A body cut short is not a response.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"),
            None
        );
        // No length: the body runs to the end of the connection.
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\n{\"id\":1}"),
            Some((200, "{\"id\":1}".into()))
        );
        // Multi-byte UTF-8 is counted in bytes.
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\"é\"".as_bytes();
        assert_eq!(parse_response(raw), Some((200, "\"é\"".into())));
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            Some((503, "hello".into()))
        );
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7;ext=1\r\n{\"id\": \r\na\r\n123456789}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(raw),
            Some((200, "{\"id\": 123456789}".into()))
        );
        // Chunk sizes in upper-case hex, no trailer CRLF after the last chunk.
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1A\r\n".to_vec();
        raw.extend_from_slice(&[b'x'; 26]);
        raw.extend_from_slice(b"\r\n0\r\n");
        assert_eq!(parse_response(&raw), Some((200, "x".repeat(26))));
        // Cut short or malformed.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            None
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
            ),
            None
        );
    }

    #[test]
    fn path_segments() {
        assert_eq!(encode_segment("orders-value"), "orders-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
