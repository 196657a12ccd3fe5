//! Avro schemas: parsing, the form that identifies a schema, and compatibility by Avro's
//! schema resolution rules (reader/writer), as the Confluent registry applies them.

use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::compat::{check_versions, Level};

/// Parses an Avro schema; the error is the parser's message.
pub fn parse(text: &str) -> Result<Schema, String> {
    Schema::parse_str(text).map_err(|e| e.to_string())
}

/// Parses an Avro schema that uses named types defined in referenced schemas (`deps`, the
/// references' texts, dependencies first).
pub fn parse_with_refs<'a>(
    text: &str,
    deps: impl IntoIterator<Item = &'a str>,
) -> Result<Schema, String> {
    Schema::parse_str_with_list(text, deps)
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// The form that identifies a schema: its JSON without insignificant whitespace. Docs,
/// defaults and aliases stay part of it, so changing a default makes a new schema, as in
/// the Confluent registry. The text must have parsed (with its references) already.
pub fn canonical(text: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(v.to_string())
}

/// The schema text without whitespace outside strings, attributes kept in their order: the
/// form the registry stores and returns.
pub fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    for c in text.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Checks `new` against `existing` (version, schema; oldest first) at `level`; returns the
/// reasons it is incompatible (empty: compatible).
pub fn check(level: Level, new: &Schema, existing: &[(i32, Schema)]) -> Vec<String> {
    check_versions(
        level,
        new,
        existing,
        |reader, writer| match SchemaCompatibility::can_read(writer, reader) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "{}; writer schema: {}",
                describe(&e),
                writer.canonical_form()
            )],
        },
    )
}

/// A reason in the form of Confluent's verbose Avro messages (Avro's incompatibility types),
/// with the path of nested fields as `additionalInfo`.
fn describe(e: &CompatibilityError) -> String {
    let mut path = Vec::new();
    let mut inner = e;
    while let CompatibilityError::FieldTypeMismatch(field, source) = inner {
        path.push(field.as_str());
        inner = source;
    }
    let (kind, info) = match inner {
        CompatibilityError::MissingDefaultValue(f) => {
            path.push(f.as_str());
            ("READER_FIELD_MISSING_DEFAULT_VALUE", path.join("/"))
        }
        CompatibilityError::MissingSymbols => ("MISSING_ENUM_SYMBOLS", path.join("/")),
        CompatibilityError::MissingUnionElements => ("MISSING_UNION_BRANCH", path.join("/")),
        CompatibilityError::FixedMismatch => ("FIXED_SIZE_MISMATCH", path.join("/")),
        CompatibilityError::NameMismatch { .. } => ("NAME_MISMATCH", path.join("/")),
        _ => ("TYPE_MISMATCH", path.join("/")),
    };
    let description = if std::ptr::eq(inner, e) {
        e.to_string()
    } else {
        format!("{e}: {inner}")
    };
    format!("{{errorType:'{kind}', description:'{description}', additionalInfo:'{info}'}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &str) -> Schema {
        parse(&format!(
            r#"{{"type":"record","name":"User","namespace":"t","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn ok(level: Level, old: &Schema, new: &Schema) -> bool {
        check(level, new, &[(1, old.clone())]).is_empty()
    }

    const NAME: &str = r#"{"name":"name","type":"string"}"#;

    #[test]
    fn added_field_with_default_is_full_compatible() {
        let old = rec(NAME);
        let new = rec(&format!(
            r#"{NAME},{{"name":"age","type":"int","default":0}}"#
        ));
        assert!(ok(Level::Backward, &old, &new));
        assert!(ok(Level::Forward, &old, &new));
        assert!(ok(Level::Full, &old, &new));
    }

    #[test]
    fn added_field_without_default_is_forward_only() {
        let old = rec(NAME);
        let new = rec(&format!(r#"{NAME},{{"name":"age","type":"int"}}"#));
        assert!(!ok(Level::Backward, &old, &new));
        assert!(ok(Level::Forward, &old, &new));
        assert!(!ok(Level::Full, &old, &new));
        assert!(ok(Level::None, &old, &new));
    }

    #[test]
    fn removed_field_without_default_is_backward_only() {
        let old = rec(&format!(r#"{NAME},{{"name":"age","type":"int"}}"#));
        let new = rec(NAME);
        assert!(ok(Level::Backward, &old, &new));
        assert!(!ok(Level::Forward, &old, &new));
        assert!(!ok(Level::Full, &old, &new));
    }

    #[test]
    fn removed_field_with_default_is_full_compatible() {
        let old = rec(&format!(
            r#"{NAME},{{"name":"age","type":"int","default":1}}"#
        ));
        let new = rec(NAME);
        assert!(ok(Level::Full, &old, &new));
    }

    #[test]
    fn int_to_long_promotion_is_backward_not_forward() {
        let old = rec(r#"{"name":"n","type":"int"}"#);
        let new = rec(r#"{"name":"n","type":"long"}"#);
        assert!(ok(Level::Backward, &old, &new));
        assert!(!ok(Level::Forward, &old, &new));
        // long -> int narrows: the new schema cannot read old data
        assert!(!ok(Level::Backward, &new, &old));
    }

    #[test]
    fn renamed_field_with_alias_is_backward_compatible() {
        let old = rec(r#"{"name":"name","type":"string"}"#);
        let renamed = rec(r#"{"name":"full_name","type":"string","aliases":["name"]}"#);
        assert!(ok(Level::Backward, &old, &renamed));
        let renamed_no_alias = rec(r#"{"name":"full_name","type":"string"}"#);
        assert!(!ok(Level::Backward, &old, &renamed_no_alias));
    }

    fn color(symbols: &str) -> Schema {
        rec(&format!(
            r#"{{"name":"c","type":{{"type":"enum","name":"Color","symbols":[{symbols}]}}}}"#
        ))
    }

    #[test]
    fn enum_symbol_added_is_backward_not_forward() {
        let old = color(r#""RED","GREEN""#);
        let new = color(r#""RED","GREEN","BLUE""#);
        assert!(ok(Level::Backward, &old, &new));
        assert!(!ok(Level::Forward, &old, &new));
    }

    #[test]
    fn enum_symbol_removed_is_forward_not_backward() {
        let old = color(r#""RED","GREEN","BLUE""#);
        let new = color(r#""RED","GREEN""#);
        assert!(!ok(Level::Backward, &old, &new));
        assert!(ok(Level::Forward, &old, &new));
    }

    #[test]
    fn transitive_checks_every_version_plain_only_the_latest() {
        let v1 = rec(NAME);
        let v2 = rec(&format!(
            r#"{NAME},{{"name":"age","type":"int","default":0}}"#
        ));
        // v3 drops the default: reads v2 data, not v1 data
        let v3 = rec(&format!(r#"{NAME},{{"name":"age","type":"int"}}"#));
        let history = [(1, v1), (2, v2)];
        assert!(check(Level::Backward, &v3, &history).is_empty());
        assert!(!check(Level::BackwardTransitive, &v3, &history).is_empty());
    }

    #[test]
    fn reasons_name_avro_incompatibility_types() {
        let old = rec(NAME);
        let new = rec(&format!(r#"{NAME},{{"name":"age","type":"int"}}"#));
        let r = check(Level::Backward, &new, &[(1, old)]);
        assert!(
            r[0].contains("errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'")
                && r[0].contains("additionalInfo:'age'"),
            "{r:?}"
        );
        let r = check(
            Level::Backward,
            &rec(r#"{"name":"n","type":"string"}"#),
            &[(1, rec(r#"{"name":"n","type":"int"}"#))],
        );
        assert!(
            r[0].contains("errorType:'TYPE_MISMATCH'") && r[0].contains("additionalInfo:'n'"),
            "{r:?}"
        );
        let r = check(
            Level::Backward,
            &color(r#""RED""#),
            &[(1, color(r#""RED","BLUE""#))],
        );
        assert!(r[0].contains("MISSING_ENUM_SYMBOLS"), "{r:?}");
    }

    #[test]
    fn recursive_types_are_checked_without_looping() {
        let list = |extra: &str| {
            parse(&format!(
                r#"{{"type":"record","name":"Node","fields":[{{"name":"v","type":"int"}},{{"name":"next","type":["null","Node"],"default":null}}{extra}]}}"#
            ))
            .unwrap()
        };
        let old = list("");
        let new = list(r#",{"name":"w","type":"int","default":0}"#);
        assert!(ok(Level::Full, &old, &new));
        let bad = list(r#",{"name":"w","type":"int"}"#);
        assert!(!ok(Level::Backward, &old, &bad));
    }

    #[test]
    fn identity_ignores_whitespace_but_not_defaults() {
        let a = canonical(r#"{"type": "record", "name": "A", "fields": []}"#).unwrap();
        let b = canonical(r#"{"type":"record","name":"A","fields":[]}"#).unwrap();
        assert_eq!(a, b);
        let c = canonical(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#)
            .unwrap();
        let d = canonical(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":1}]}"#,
        )
        .unwrap();
        assert_ne!(c, d);
        assert!(parse(r#"{"type":"record","name":"A"}"#).is_err());
        assert_eq!(
            minify("{ \"type\" : \"enum\", \"name\":\"E\", \"doc\": \"a \\\" b\", \"symbols\": [\"A\"] }"),
            r#"{"type":"enum","name":"E","doc":"a \" b","symbols":["A"]}"#
        );
    }
}
