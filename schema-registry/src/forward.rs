//! Forwarding a write to the registry of the `_schemas` leader (cluster only): one HTTP
//! request per write, the answer passed back unchanged.

use std::time::Duration;

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
    Http(#[from] reqwest::Error),
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

/// Sends `method path_and_query` with `body` to the registry at `base` (`http://host:port`),
/// with the caller's `Authorization` header (the receiver authenticates it again).
pub async fn send(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    tokio::time::timeout(
        TIMEOUT,
        exchange(
            base,
            method,
            path_and_query,
            content_type,
            authorization,
            body,
        ),
    )
    .await
    .map_err(|_| ForwardError::Timeout)?
}

fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

async fn exchange(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    let authority = base
        .strip_prefix("http://")
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .ok_or_else(|| ForwardError::Url(base.to_string()))?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ForwardError::Url(format!("method {method}")))?;
    let mut req = client()
        .request(method, format!("http://{authority}{path_and_query}"))
        .header(FORWARDED, "1")
        .body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(a) = authorization {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    let mut resp = req.send().await?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = resp.status().as_u16();
    let content_type = header(reqwest::header::CONTENT_TYPE.as_str());
    let applied = header(APPLIED).and_then(|v| v.parse::<i64>().ok());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(ForwardError::Malformed("answer too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        content_type,
        applied,
        body,
    })
}
