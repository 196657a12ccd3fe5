//! Forwarding a write to the registry of the `_schemas` leader (cluster only): one HTTP
//! request per write, the answer passed back unchanged.

use std::time::Duration;

/// Marks a forwarded request, so a registry that is no longer the writer does not forward it
/// again (no loops while leadership moves), and so the receiver does not take the forwarding
/// broker's TLS client certificate for the caller's.
pub const FORWARDED: &str = engine::http_auth::FORWARDED;
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

/// Who the forwarded request is for.
pub enum Caller<'a> {
    /// The caller's `Authorization` header, if any (the receiver authenticates it again).
    Authorization(Option<&'a str>),
    /// A caller this broker authenticated by its TLS client certificate: this broker signs the
    /// request as sent on that principal's behalf (with a cluster secret; without one nothing
    /// authorizes principals across brokers).
    Certificate(&'a engine::Broker, &'a engine::security::Principal),
}

/// Sends `method path_and_query` with `body` to the registry at `base` (`http://host:port`,
/// or `https://` under `--http-tls`), for `caller`.
pub async fn send(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    caller: Caller<'_>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    tokio::time::timeout(
        TIMEOUT,
        exchange(base, method, path_and_query, content_type, caller, body),
    )
    .await
    .map_err(|_| ForwardError::Timeout)?
}

/// `(scheme, host:port)` of a broker's service URL.
fn authority(base: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = match base.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", base.strip_prefix("http://")?),
    };
    let rest = rest.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then_some((scheme, rest))
}

async fn exchange(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    caller: Caller<'_>,
    body: &[u8],
) -> Result<Answer, ForwardError> {
    let (scheme, authority) = authority(base).ok_or_else(|| ForwardError::Url(base.to_string()))?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ForwardError::Url(format!("method {method}")))?;
    let mut req = engine::http::peer_client()
        .request(
            method.clone(),
            format!("{scheme}://{authority}{path_and_query}"),
        )
        .header(FORWARDED, "1")
        .body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    match caller {
        Caller::Authorization(Some(a)) => req = req.header(reqwest::header::AUTHORIZATION, a),
        Caller::Authorization(None) => {}
        Caller::Certificate(broker, principal) => {
            if let Some((name, value)) = engine::http_auth::sign_request_on_behalf(
                broker,
                method.as_str(),
                authority,
                path_and_query,
                body,
                principal,
            ) {
                req = req.header(name, value);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn service_urls() {
        assert_eq!(
            authority("http://10.0.0.1:8081"),
            Some(("http", "10.0.0.1:8081"))
        );
        assert_eq!(
            authority("https://[::1]:8081/"),
            Some(("https", "[::1]:8081"))
        );
        assert_eq!(authority("https://"), None);
        assert_eq!(authority("ftp://h:1"), None);
        assert_eq!(authority("http://h:1/x"), None);
    }
}
