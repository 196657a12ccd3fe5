//! Writing to stdout without panicking when the reader goes away (`| head`).

use std::io::Write;

use anyhow::{anyhow, Result};

/// Whether stdout still has a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printed {
    Ok,
    Closed,
}

tokio::task_local! {
    /// Set by [`capture`]: output goes here instead of stdout.
    static CAPTURE: std::cell::RefCell<String>;
}

/// Runs a command, collecting what it would print (the admin API answers the CLI's
/// `--format json` output this way).
pub async fn capture<F>(f: F) -> Result<String>
where
    F: std::future::Future<Output = Result<()>>,
{
    CAPTURE
        .scope(std::cell::RefCell::new(String::new()), async {
            f.await?;
            Ok(CAPTURE.with(|c| c.take()))
        })
        .await
}

/// Writes `text` as is and flushes.
pub fn emit_raw(text: &str) -> Result<Printed> {
    if CAPTURE.try_with(|c| c.borrow_mut().push_str(text)).is_ok() {
        return Ok(Printed::Ok);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(Printed::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Printed::Closed),
        Err(e) => Err(anyhow!(
            "cannot write to standard output ({e}): check where the output goes"
        )),
    }
}

/// Writes `text` and a newline.
pub fn emit(text: &str) -> Result<Printed> {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    emit_raw(&s)
}

/// Writes one JSON value on one line.
pub fn emit_json(value: &serde_json::Value) -> Result<Printed> {
    emit(&value.to_string())
}

/// Writes a JSON document for people and `jq`.
pub fn emit_json_pretty(value: &serde_json::Value) -> Result<Printed> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| anyhow!("cannot format JSON output ({e}): report this bug"))?;
    emit(&text)
}
