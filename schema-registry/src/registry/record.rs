//! The `_schemas` record encoding: keys and values in Confluent's own format.

use serde_json::{json, Value};

use super::format::has_refs;

/// Keys are written byte for byte as Confluent's registry writes them (attribute order
/// included), so that compaction treats a key from either the same way.
pub(super) fn schema_key(subject: &str, version: i32) -> String {
    format!(
        r#"{{"keytype":"SCHEMA","subject":{},"version":{version},"magic":1}}"#,
        Value::from(subject)
    )
}

pub(super) fn other_key(keytype: &str, subject: Option<&str>) -> String {
    format!(
        r#"{{"keytype":"{keytype}","subject":{},"magic":0}}"#,
        subject.map_or(Value::Null, Value::from)
    )
}

pub(super) fn schema_value(
    subject: &str,
    version: i32,
    id: i32,
    schema: &str,
    schema_type: &str,
    refs: &Value,
    deleted: bool,
) -> String {
    let mut v = json!({
        "subject": subject,
        "version": version,
        "id": id,
        "schema": schema,
        "deleted": deleted,
    });
    if schema_type != "AVRO" {
        v["schemaType"] = schema_type.into();
    }
    if has_refs(refs) {
        v["references"] = refs.clone();
    }
    v.to_string()
}

/// The record that soft-deletes a subject's versions up to `latest` on replay.
pub(super) fn delete_subject_record(subject: &str, latest: i32) -> (String, Option<String>) {
    (
        json!({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0}).to_string(),
        Some(json!({"subject": subject, "version": latest}).to_string()),
    )
}

/// Confluent's barrier: a new leader commits it and waits until it has read it back.
pub(super) fn noop_record() -> (String, Option<String>) {
    (r#"{"keytype":"NOOP","magic":0}"#.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_in_confluent_form() {
        assert_eq!(
            schema_key("a\"b", 3),
            r#"{"keytype":"SCHEMA","subject":"a\"b","version":3,"magic":1}"#
        );
        assert_eq!(
            other_key("CONFIG", None),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
    }
}
