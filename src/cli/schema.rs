//! `icestream schema register|get|list|check|delete|config|mode`: a client of the broker's
//! Confluent-compatible schema registry REST API (`--schema-registry-url`), like
//! `rpk registry`. Nothing here reads the data directory.

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::errors::one_line;
use super::http::{encode_segment, parse_service_url, request, HttpUrl, SCHEMA_REGISTRY};
use super::output::{emit, emit_json_pretty, emit_raw};
use super::table::{key_values, Table};
use super::{ClientArgs, Format};

const WHAT_TO_DO: &str = "is 'icestream serve' running? set --schema-registry-url";

/// The compatibility levels the registry accepts.
pub const LEVELS: &[&str] = &[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
];

/// A subject version: a number from 1, or the latest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Latest,
    Number(u32),
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" | "-1" => Ok(Version::Latest),
            n => match n.parse::<u32>() {
                Ok(v) if (1..=i32::MAX as u32).contains(&v) => Ok(Version::Number(v)),
                _ => Err(format!(
                    "'{n}' is not a version: use a number from 1, or latest"
                )),
            },
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A schema type, as the registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaType(&'static str);

impl std::str::FromStr for SchemaType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType("AVRO")),
            "JSON" => Ok(SchemaType("JSON")),
            "PROTOBUF" => Ok(SchemaType("PROTOBUF")),
            _ => Err(format!(
                "'{s}' is not a schema type: use AVRO, JSON or PROTOBUF"
            )),
        }
    }
}

impl Default for SchemaType {
    fn default() -> Self {
        SchemaType("AVRO")
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A schema reference, `NAME=SUBJECT:VERSION` on the command line: an Avro named type, a
/// JSON Schema `$ref` target or a Protobuf import path, defined by that subject version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

impl std::str::FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("'{s}' is not a reference: use NAME=SUBJECT:VERSION, e.g. money.proto=money-value:1")
        };
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let (subject, version) = rest.rsplit_once(':').ok_or_else(bad)?;
        let version = match version {
            "latest" | "-1" => -1,
            v => v
                .parse::<u32>()
                .ok()
                .filter(|v| (1..=i32::MAX as u32).contains(v))
                .ok_or_else(bad)? as i64,
        };
        if name.is_empty() || subject.is_empty() {
            return Err(bad());
        }
        Ok(Reference {
            name: name.to_string(),
            subject: subject.to_string(),
            version,
        })
    }
}

/// The modes the registry accepts.
pub const MODES: &[&str] = &["READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"];

/// What a request was about, to word its errors.
#[derive(Default)]
struct About<'a> {
    subject: Option<&'a str>,
    version: Option<String>,
    id: Option<u32>,
}

impl<'a> About<'a> {
    fn subject(s: &'a str) -> Self {
        About {
            subject: Some(s),
            ..Default::default()
        }
    }
    fn version(s: &'a str, v: impl ToString) -> Self {
        About {
            subject: Some(s),
            version: Some(v.to_string()),
            id: None,
        }
    }
}

struct Registry {
    url: HttpUrl,
    shown: String,
}

impl Registry {
    fn new(args: &ClientArgs) -> Result<Self> {
        Ok(Registry {
            url: parse_service_url(&args.schema_registry_url, SCHEMA_REGISTRY)?.with_auth(args),
            shown: args.schema_registry_url.clone(),
        })
    }

    /// Sends a request and returns the JSON answer of a 2xx, or the error line.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        about: &About<'_>,
    ) -> Result<Value> {
        let body = body.map(|b| b.to_string());
        let (status, text) = request(
            &self.url,
            SCHEMA_REGISTRY,
            method,
            path,
            body.as_deref(),
            WHAT_TO_DO,
        )
        .await?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return parsed.ok_or_else(|| {
                anyhow!(
                    "the schema registry at {} answered {method} {path} with a body that is not JSON: check --schema-registry-url",
                    self.shown
                )
            });
        }
        Err(self.error(status, &text, parsed.as_ref(), about))
    }

    /// One actionable line for a registry error answer.
    fn error(
        &self,
        status: u16,
        text: &str,
        body: Option<&Value>,
        about: &About<'_>,
    ) -> anyhow::Error {
        let code = body
            .and_then(|b| b.get("error_code"))
            .and_then(Value::as_i64);
        let message = body
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_else(|| one_line(text).chars().take(200).collect());
        let subject = about.subject.unwrap_or("?");
        let version = about.version.as_deref().unwrap_or("?");
        let Some(code) = code else {
            return anyhow!(
                "the schema registry at {} answered HTTP {status} ({message}): is --schema-registry-url the registry's address?",
                self.shown
            );
        };
        match code {
            40401 => anyhow!(
                "subject '{subject}' does not exist: list subjects with 'icestream schema list'"
            ),
            40402 => anyhow!(
                "version {version} of subject '{subject}' does not exist: list its versions with 'icestream schema list {subject}'"
            ),
            40403 => match about.id {
                Some(id) => anyhow!(
                    "schema id {id} does not exist: look schemas up by subject with 'icestream schema get SUBJECT'"
                ),
                None => anyhow!("schema not found ({message})"),
            },
            40404 => anyhow!(
                "subject '{subject}' is already soft-deleted: add --permanent to delete it for good"
            ),
            40405 => anyhow!(
                "subject '{subject}' must be soft-deleted before a permanent delete: run 'icestream schema delete {subject}' first"
            ),
            40406 => anyhow!(
                "version {version} of subject '{subject}' is already soft-deleted: add --permanent to delete it for good"
            ),
            40407 => anyhow!(
                "version {version} of subject '{subject}' must be soft-deleted before a permanent delete: run 'icestream schema delete {subject} --version {version}' first"
            ),
            40408 => anyhow!(
                "subject '{subject}' has no compatibility level of its own: see the global one with 'icestream schema config'"
            ),
            409 => anyhow!(
                "schema is incompatible with subject '{subject}': {message}: see why with 'icestream schema check', or change the level with 'icestream schema config {subject} --set LEVEL'"
            ),
            42201 => anyhow!("invalid schema: {message}: fix the schema file"),
            42202 => anyhow!("invalid version ({message}): use a number from 1, or latest"),
            42203 => anyhow!(
                "invalid compatibility level ({message}): use one of {}",
                LEVELS.join(", ")
            ),
            40409 => anyhow!(
                "subject '{subject}' has no mode of its own: see the global one with 'icestream schema mode'"
            ),
            42204 => anyhow!("invalid mode ({message}): use one of {}", MODES.join(", ")),
            42205 => anyhow!(
                "the schema registry does not permit this ({message}): see the mode with 'icestream schema mode {subject}', set READWRITE with --set"
            ),
            42206 => anyhow!(
                "other schemas reference subject '{subject}' ({message}): delete them first; see which with GET /subjects/{subject}/versions/N/referencedby"
            ),
            40101 => anyhow!(
                "the schema registry at {} needs credentials ({message}): give --user and --password (or ICESTREAM_PASSWORD)",
                self.shown
            ),
            40301 => anyhow!("not allowed: {message}: ask an admin for an ACL on the subject"),
            50001..=50099 => anyhow!(
                "the schema registry failed ({code}: {message}): retry, and check the broker log"
            ),
            _ => anyhow!(
                "the schema registry refused the request (HTTP {status}, error {code}: {message})"
            ),
        }
    }
}

fn read_schema(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read schema file '{path}' ({}): check the path",
            one_line(&e.to_string())
        )
    })
}

fn schema_body(text: &str, schema_type: SchemaType, refs: &[Reference]) -> Value {
    let mut body = json!({ "schema": text });
    if schema_type != SchemaType::default() {
        body["schemaType"] = schema_type.0.into();
    }
    if !refs.is_empty() {
        body["references"] = refs
            .iter()
            .map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version}))
            .collect();
    }
    body
}

fn subject_path(subject: &str) -> String {
    format!("/subjects/{}", encode_segment(subject))
}

pub async fn register(
    args: &ClientArgs,
    subject: &str,
    file: &str,
    schema_type: SchemaType,
    refs: &[Reference],
) -> Result<()> {
    let reg = Registry::new(args)?;
    let text = read_schema(file)?;
    let answer = reg
        .call(
            "POST",
            &format!("{}/versions", subject_path(subject)),
            Some(&schema_body(&text, schema_type, refs)),
            &About::subject(subject),
        )
        .await?;
    let id = answer.get("id").and_then(Value::as_u64).ok_or_else(|| {
        anyhow!("the schema registry answered without an id: check --schema-registry-url")
    })?;
    match args.format {
        Format::Json => emit_json_pretty(&json!({"subject": subject, "id": id}))?,
        Format::Table => emit(&id.to_string())?,
    };
    Ok(())
}

pub async fn get(
    args: &ClientArgs,
    subject: Option<&str>,
    version: Option<Version>,
    id: Option<u32>,
) -> Result<()> {
    let reg = Registry::new(args)?;
    let (subject, version, id, schema_type, schema) = match (subject, id) {
        (Some(subject), None) => {
            let v = version.unwrap_or(Version::Latest);
            let answer = reg
                .call(
                    "GET",
                    &format!("{}/versions/{v}", subject_path(subject)),
                    None,
                    &About::version(subject, &v),
                )
                .await?;
            (
                json!(subject),
                answer.get("version").cloned().unwrap_or(Value::Null),
                answer.get("id").cloned().unwrap_or(Value::Null),
                type_of(&answer),
                schema_text(&answer),
            )
        }
        (None, Some(id)) => {
            let about = About {
                id: Some(id),
                ..Default::default()
            };
            let answer = reg
                .call("GET", &format!("/schemas/ids/{id}"), None, &about)
                .await?;
            let versions = reg
                .call("GET", &format!("/schemas/ids/{id}/versions"), None, &about)
                .await?;
            let first = versions.as_array().and_then(|v| v.first());
            (
                first
                    .and_then(|f| f.get("subject"))
                    .cloned()
                    .unwrap_or(Value::Null),
                first
                    .and_then(|f| f.get("version"))
                    .cloned()
                    .unwrap_or(Value::Null),
                json!(id),
                type_of(&answer),
                schema_text(&answer),
            )
        }
        _ => bail!("name a subject or an --id, not both: e.g. 'icestream schema get orders-value' or 'icestream schema get --id 1'"),
    };
    if args.format == Format::Json {
        emit_json_pretty(&json!({
            "subject": subject,
            "version": version,
            "id": id,
            "type": schema_type,
            "schema": schema,
        }))?;
        return Ok(());
    }
    let show = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mut out = key_values(&[
        ("SUBJECT", show(&subject)),
        ("VERSION", show(&version)),
        ("ID", show(&id)),
        ("TYPE", schema_type),
    ]);
    // The schema as the registry stores it (JSON keeps its order; Protobuf its lines).
    out.push('\n');
    out.push_str(&schema);
    emit(&out)?;
    Ok(())
}

fn type_of(answer: &Value) -> String {
    answer
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
        .to_string()
}

fn schema_text(answer: &Value) -> String {
    answer
        .get("schema")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub async fn list(args: &ClientArgs, subject: Option<&str>, deleted: bool) -> Result<()> {
    let reg = Registry::new(args)?;
    let query = if deleted { "?deleted=true" } else { "" };
    match subject {
        None => {
            let answer = reg
                .call("GET", &format!("/subjects{query}"), None, &About::default())
                .await?;
            let mut subjects: Vec<String> = answer
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            subjects.sort();
            if args.format == Format::Json {
                emit_json_pretty(&json!(subjects))?;
                return Ok(());
            }
            let mut t = Table::new(&["SUBJECT"]);
            for s in subjects {
                t.row(vec![s]);
            }
            emit_raw(&t.render())?;
        }
        Some(subject) => {
            let answer = reg
                .call(
                    "GET",
                    &format!("{}/versions{query}", subject_path(subject)),
                    None,
                    &About::subject(subject),
                )
                .await?;
            let versions: Vec<i64> = answer
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            if args.format == Format::Json {
                emit_json_pretty(&json!({"subject": subject, "versions": versions}))?;
                return Ok(());
            }
            let mut t = Table::new(&["SUBJECT", "VERSION"]);
            for v in versions {
                t.row(vec![subject.to_string(), v.to_string()]);
            }
            emit_raw(&t.render())?;
        }
    }
    Ok(())
}

pub async fn check(
    args: &ClientArgs,
    subject: &str,
    file: &str,
    schema_type: SchemaType,
    refs: &[Reference],
    version: Option<Version>,
) -> Result<()> {
    let reg = Registry::new(args)?;
    let text = read_schema(file)?;
    let v = version.unwrap_or(Version::Latest);
    let answer = reg
        .call(
            "POST",
            &format!(
                "/compatibility{}/versions/{v}?verbose=true",
                subject_path(subject)
            ),
            Some(&schema_body(&text, schema_type, refs)),
            &About::version(subject, &v),
        )
        .await?;
    let compatible = answer
        .get("is_compatible")
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            anyhow!(
                "the schema registry answered without is_compatible: check --schema-registry-url"
            )
        })?;
    let messages: Vec<String> = answer
        .get("messages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| one_line(m.as_str().map_or(&m.to_string(), |s| s)))
                .collect()
        })
        .unwrap_or_default();
    match args.format {
        Format::Json => emit_json_pretty(&json!({
            "subject": subject,
            "version": v.to_string(),
            "compatible": compatible,
            "messages": messages,
        }))?,
        Format::Table if compatible => emit("compatible")?,
        Format::Table => super::output::Printed::Ok,
    };
    if !compatible {
        let reasons = if messages.is_empty() {
            "no reason given".to_string()
        } else {
            messages.join("; ")
        };
        bail!("incompatible: {reasons}");
    }
    Ok(())
}

pub async fn delete(
    args: &ClientArgs,
    subject: &str,
    version: Option<Version>,
    permanent: bool,
) -> Result<()> {
    let reg = Registry::new(args)?;
    let (path, about) = match &version {
        None => (subject_path(subject), About::subject(subject)),
        Some(v) => (
            format!("{}/versions/{v}", subject_path(subject)),
            About::version(subject, v),
        ),
    };
    let mut answer = None;
    // A permanent delete needs a soft delete first; do it unless it was already done.
    match reg.call("DELETE", &path, None, &about).await {
        Ok(a) => answer = Some(a),
        Err(e) if permanent && is_already_soft_deleted(&e) => {}
        Err(e) => return Err(e),
    }
    if permanent {
        // `latest` would name another version after the soft delete: pin the one deleted.
        let path = match (&version, answer.as_ref().and_then(Value::as_i64)) {
            (Some(Version::Latest), Some(n)) => format!("{}/versions/{n}", subject_path(subject)),
            _ => path,
        };
        answer = Some(
            reg.call("DELETE", &format!("{path}?permanent=true"), None, &about)
                .await?,
        );
    }
    let answer = answer.unwrap_or(Value::Null);
    let versions: Vec<i64> = match &answer {
        Value::Array(a) => a.iter().filter_map(Value::as_i64).collect(),
        Value::Number(n) => n.as_i64().into_iter().collect(),
        _ => Vec::new(),
    };
    if args.format == Format::Json {
        emit_json_pretty(&json!({
            "subject": subject,
            "versions": versions,
            "permanent": permanent,
        }))?;
        return Ok(());
    }
    let list = versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let how = if permanent {
        "permanently deleted"
    } else {
        "soft-deleted"
    };
    let what = if versions.len() == 1 {
        "version"
    } else {
        "versions"
    };
    emit(&format!("{how} {what} {list} of subject '{subject}'"))?;
    Ok(())
}

fn is_already_soft_deleted(e: &anyhow::Error) -> bool {
    e.to_string().contains("is already soft-deleted")
}

/// A registry-wide or per-subject setting (`/config`, `/mode`): read (a subject falls back to
/// the global value), set, and shown the same way.
struct Setting<'a> {
    reg: Registry,
    path: String,
    subject: Option<&'a str>,
    about: About<'a>,
}

impl<'a> Setting<'a> {
    /// `resource` is the REST path's first segment: `config` or `mode`.
    fn new(args: &ClientArgs, resource: &str, subject: Option<&'a str>) -> Result<Self> {
        let path = match subject {
            Some(s) => format!("/{resource}/{}", encode_segment(s)),
            None => format!("/{resource}"),
        };
        Ok(Setting {
            reg: Registry::new(args)?,
            path,
            subject,
            about: About {
                subject,
                ..Default::default()
            },
        })
    }

    async fn get(&self) -> Result<Value> {
        let query = if self.subject.is_some() {
            "?defaultToGlobal=true"
        } else {
            ""
        };
        let path = format!("{}{query}", self.path);
        self.reg.call("GET", &path, None, &self.about).await
    }

    async fn put(&self, query: &str, body: Value) -> Result<Value> {
        let path = format!("{}{query}", self.path);
        self.reg.call("PUT", &path, Some(&body), &self.about).await
    }

    /// Prints the value as `{"subject", <json_key>}` or as a SUBJECT / `<heading>` table.
    fn show(&self, args: &ClientArgs, json_key: &str, heading: &str, value: String) -> Result<()> {
        if args.format == Format::Json {
            let mut out = json!({ "subject": self.subject });
            out[json_key] = Value::String(value);
            emit_json_pretty(&out)?;
            return Ok(());
        }
        emit_raw(&key_values(&[
            ("SUBJECT", self.subject.unwrap_or("(global)").to_string()),
            (heading, value),
        ]))?;
        Ok(())
    }
}

/// `value` in upper case if it is one of `allowed`.
fn one_of(value: &str, allowed: &[&str], what: &str) -> Result<String> {
    let value = value.to_ascii_uppercase();
    if !allowed.contains(&value.as_str()) {
        bail!("'{value}' is not {what}: use one of {}", allowed.join(", "));
    }
    Ok(value)
}

pub async fn config(args: &ClientArgs, subject: Option<&str>, set: Option<&str>) -> Result<()> {
    let setting = Setting::new(args, "config", subject)?;
    let level = match set {
        Some(level) => {
            let level = one_of(level, LEVELS, "a compatibility level")?;
            let answer = setting.put("", json!({"compatibility": level})).await?;
            answer
                .get("compatibility")
                .and_then(Value::as_str)
                .unwrap_or(&level)
                .to_string()
        }
        None => {
            let answer = setting.get().await?;
            answer
                .get("compatibilityLevel")
                .or_else(|| answer.get("compatibility"))
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        }
    };
    setting.show(args, "compatibility", "COMPATIBILITY", level)
}

/// Shows or sets the registry's mode, or a subject's (`--force` for IMPORT on a non-empty
/// registry or subject).
pub async fn mode(
    args: &ClientArgs,
    subject: Option<&str>,
    set: Option<&str>,
    force: bool,
) -> Result<()> {
    let setting = Setting::new(args, "mode", subject)?;
    let answer = match set {
        Some(m) => {
            let m = one_of(m, MODES, "a mode")?;
            let query = if force { "?force=true" } else { "" };
            setting.put(query, json!({"mode": m})).await?
        }
        None => setting.get().await?,
    };
    let mode = answer
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    setting.show(args, "mode", "MODE", mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_types() {
        assert_eq!("latest".parse::<Version>(), Ok(Version::Latest));
        assert_eq!("-1".parse::<Version>(), Ok(Version::Latest));
        assert_eq!("3".parse::<Version>(), Ok(Version::Number(3)));
        assert!("0".parse::<Version>().is_err());
        assert!("x".parse::<Version>().is_err());
        assert_eq!("avro".parse::<SchemaType>(), Ok(SchemaType("AVRO")));
        assert_eq!("PROTOBUF".parse::<SchemaType>(), Ok(SchemaType("PROTOBUF")));
        assert!("xml".parse::<SchemaType>().is_err());
        assert_eq!(
            "money.proto=money-value:2".parse::<Reference>(),
            Ok(Reference {
                name: "money.proto".into(),
                subject: "money-value".into(),
                version: 2
            })
        );
        assert_eq!("a=b:latest".parse::<Reference>().map(|r| r.version), Ok(-1));
        assert!("a=b".parse::<Reference>().is_err());
        assert!("a=b:0".parse::<Reference>().is_err());
    }

    #[test]
    fn errors_are_one_actionable_line() {
        let reg = Registry {
            url: parse_service_url("http://127.0.0.1:8081", SCHEMA_REGISTRY).expect("url"),
            shown: "http://127.0.0.1:8081".into(),
        };
        let err = |status, body: &str, about: &About| {
            let v: Option<Value> = serde_json::from_str(body).ok();
            reg.error(status, body, v.as_ref(), about).to_string()
        };
        let e = err(
            404,
            r#"{"error_code":40401,"message":"Subject 'x' not found."}"#,
            &About::subject("x"),
        );
        assert_eq!(
            e,
            "subject 'x' does not exist: list subjects with 'icestream schema list'"
        );
        let e = err(
            409,
            r#"{"error_code":409,"message":"Schema being registered is incompatible\nwith an earlier schema"}"#,
            &About::subject("x"),
        );
        assert!(e.starts_with("schema is incompatible with subject 'x': Schema being registered is incompatible with an earlier schema"), "{e}");
        let e = err(
            422,
            r#"{"error_code":42201,"message":"bad"}"#,
            &About::subject("x"),
        );
        assert!(e.starts_with("invalid schema: bad"), "{e}");
        let e = err(404, "<html>\nnope</html>", &About::default());
        assert!(e.contains("HTTP 404") && !e.contains('\n'), "{e}");
    }
}
