//! JSON Schema (`schemaType: "JSON"`): parsing, the form that identifies a schema, and the
//! Confluent registry's JSON Schema compatibility rules.
//!
//! The compatibility checker is written by hand (no JSON Schema library): it compares two
//! schema documents structurally, the way Confluent's `SchemaDiff` does, and reports each
//! change Confluent classes as incompatible, with the JSON path and the rule's name. Data is
//! never validated against a schema here; clients do that.
//!
//! `compare(original, update)` asks whether data valid under `original` stays readable with
//! `update`: BACKWARD compares (old, new), FORWARD (new, old), FULL both.

use serde_json::{Map, Value};

use crate::compat::{check_versions, Level};

/// Parses a JSON Schema document: it must be a JSON object or a boolean.
pub fn parse(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    check_schema(&v, "#")?;
    Ok(v)
}

/// The light structural check done at registration: every schema position holds an object
/// or a boolean, and `type` names JSON Schema types.
fn check_schema(v: &Value, path: &str) -> Result<(), String> {
    let obj = match v {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "{path}: a JSON Schema must be an object or a boolean, found {other}"
            ))
        }
    };
    const TYPES: [&str; 7] = [
        "null", "boolean", "object", "array", "number", "string", "integer",
    ];
    match obj.get("type") {
        None => {}
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts))
            if ts
                .iter()
                .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
        Some(t) => return Err(format!("{path}/type: not a JSON Schema type: {t}")),
    }
    for key in ["properties", "patternProperties", "definitions", "$defs"] {
        if let Some(p) = obj.get(key) {
            let Some(p) = p.as_object() else {
                return Err(format!("{path}/{key}: must be an object"));
            };
            for (name, s) in p {
                check_schema(s, &format!("{path}/{key}/{name}"))?;
            }
        }
    }
    for key in ["additionalProperties", "items", "not", "additionalItems"] {
        match obj.get(key) {
            Some(Value::Array(a)) if key == "items" => {
                for (i, s) in a.iter().enumerate() {
                    check_schema(s, &format!("{path}/{key}/{i}"))?;
                }
            }
            Some(s) => check_schema(s, &format!("{path}/{key}"))?,
            None => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(a) = obj.get(key) {
            let Some(a) = a.as_array() else {
                return Err(format!("{path}/{key}: must be an array"));
            };
            for (i, s) in a.iter().enumerate() {
                check_schema(s, &format!("{path}/{key}/{i}"))?;
            }
        }
    }
    if let Some(r) = obj.get("required") {
        if !r.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err(format!("{path}/required: must be an array of strings"));
        }
    }
    if let Some(e) = obj.get("enum") {
        if !e.is_array() {
            return Err(format!("{path}/enum: must be an array"));
        }
    }
    Ok(())
}

/// Replaces each `{"$ref": NAME}` whose NAME (optionally followed by `#`) is a reference's
/// name with the referenced document, so compatibility compares what the reference points at.
/// A reference inside the document it names (a cycle) stays a `$ref`, and so does every one
/// past a budget of inlined documents, so a hostile set of references cannot blow up.
pub fn inline_refs(v: &Value, refs: &std::collections::HashMap<String, Value>) -> Value {
    struct Inliner<'a> {
        refs: &'a std::collections::HashMap<String, Value>,
        open: Vec<&'a str>,
        budget: usize,
    }
    impl<'a> Inliner<'a> {
        fn go(&mut self, v: &Value) -> Value {
            match v {
                Value::Object(o) => {
                    if let Some(target) = o.get("$ref").and_then(Value::as_str) {
                        let name = target.strip_suffix('#').unwrap_or(target);
                        if let Some((key, doc)) = self.refs.get_key_value(name) {
                            if self.budget > 0 && !self.open.contains(&key.as_str()) {
                                self.budget -= 1;
                                self.open.push(key);
                                let out = self.go(doc);
                                self.open.pop();
                                return out;
                            }
                        }
                    }
                    Value::Object(o.iter().map(|(k, x)| (k.clone(), self.go(x))).collect())
                }
                Value::Array(a) => Value::Array(a.iter().map(|x| self.go(x)).collect()),
                other => other.clone(),
            }
        }
    }
    Inliner {
        refs,
        open: Vec::new(),
        budget: 64,
    }
    .go(v)
}

/// The form that identifies a schema: minified, object keys sorted (whitespace and key order
/// do not change the id).
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                let mut m = Map::new();
                for k in keys {
                    m.insert(k.clone(), sorted(&o[k]));
                }
                Value::Object(m)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json may keep insertion order (preserve_order); write keys in sorted order.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    write(&o[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&sorted(v), &mut out);
    out
}

/// Checks `new` against `existing` (version, schema; oldest first) at `level`; returns the
/// reasons it is incompatible (empty: compatible).
pub fn check(level: Level, new: &Value, existing: &[(i32, Value)]) -> Vec<String> {
    check_versions(level, new, existing, |reader, writer| {
        compare(writer, reader)
            .into_iter()
            .map(|d| format!("Found incompatible change: {d}"))
            .collect()
    })
}

/// The incompatible differences between `original` (the writer's schema) and `update` (the
/// reader's), as `Difference{jsonPath='...', type=RULE}` strings.
pub fn compare(original: &Value, update: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(original, update, "#", &mut out);
    out
}

fn push(out: &mut Vec<String>, path: &str, rule: &str) {
    out.push(format!("Difference{{jsonPath='{path}', type={rule}}}"));
}

/// `true`, `{}` or a schema with only annotations: accepts anything.
fn is_empty_schema(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Object(o) => o.keys().all(|k| {
            matches!(
                k.as_str(),
                "title" | "description" | "$comment" | "default" | "examples" | "$id" | "$schema"
            )
        }),
        _ => false,
    }
}

fn types(o: &Map<String, Value>) -> Option<Vec<String>> {
    match o.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// The content model of an object schema: open (extra properties allowed), closed
/// (`additionalProperties: false`) or partially open (`additionalProperties` is a schema).
enum Model<'a> {
    Open,
    Closed,
    Partial(&'a Value),
}

fn model(o: &Map<String, Value>) -> Model<'_> {
    match o.get("additionalProperties") {
        None | Some(Value::Bool(true)) => Model::Open,
        Some(Value::Bool(false)) => Model::Closed,
        Some(s) if is_empty_schema(s) => Model::Open,
        Some(s) => Model::Partial(s),
    }
}

fn num(o: &Map<String, Value>, k: &str) -> Option<f64> {
    o.get(k).and_then(Value::as_f64)
}

fn diff(original: &Value, update: &Value, path: &str, out: &mut Vec<String>) {
    if is_empty_schema(update) || original == update || original == &Value::Bool(false) {
        return;
    }
    let (Some(o), Some(u)) = (original.as_object(), update.as_object()) else {
        // `original` accepts something, `update` is `false` (or `original` is `true`).
        push(out, path, "TYPE_NARROWED");
        return;
    };

    if o.get("$ref") != u.get("$ref") {
        push(out, path, "REFERENCE_CHANGED");
    }

    // type: the update must accept every type the original does; integer -> number widens.
    if let Some(ut) = types(u) {
        match types(o) {
            None => push(out, path, "TYPE_NARROWED"),
            Some(ot) => {
                let covered = |t: &String| {
                    ut.contains(t) || (t == "integer" && ut.iter().any(|x| x == "number"))
                };
                if !ot.iter().all(covered) {
                    let rule = if ot.iter().any(covered) {
                        "TYPE_NARROWED"
                    } else {
                        "TYPE_CHANGED"
                    };
                    push(out, path, rule);
                }
            }
        }
    }

    // enum: values added are compatible, values removed (or an enum added) are not.
    if let Some(ue) = u.get("enum").and_then(Value::as_array) {
        match o.get("enum").and_then(Value::as_array) {
            None => push(out, &format!("{path}/enum"), "ENUM_ARRAY_NARROWED"),
            Some(oe) => {
                if !oe.iter().all(|x| ue.contains(x)) {
                    push(out, &format!("{path}/enum"), "ENUM_ARRAY_NARROWED");
                }
            }
        }
    }
    if let Some(uc) = u.get("const") {
        if o.get("const") != Some(uc) {
            push(out, &format!("{path}/const"), "CONST_CHANGED");
        }
    }

    // Upper bounds may grow or go; lower bounds may shrink or go.
    for (k, rule) in [
        ("maxLength", "MAX_LENGTH"),
        ("maximum", "MAXIMUM"),
        ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM"),
        ("maxItems", "MAX_ITEMS"),
        ("maxProperties", "MAX_PROPERTIES"),
    ] {
        if let Some(uv) = num(u, k) {
            match num(o, k) {
                None => push(out, &format!("{path}/{k}"), &format!("{rule}_ADDED")),
                Some(ov) if uv < ov => {
                    push(out, &format!("{path}/{k}"), &format!("{rule}_DECREASED"))
                }
                _ => {}
            }
        }
    }
    for (k, rule) in [
        ("minLength", "MIN_LENGTH"),
        ("minimum", "MINIMUM"),
        ("exclusiveMinimum", "EXCLUSIVE_MINIMUM"),
        ("minItems", "MIN_ITEMS"),
        ("minProperties", "MIN_PROPERTIES"),
    ] {
        if let Some(uv) = num(u, k) {
            match num(o, k) {
                None => push(out, &format!("{path}/{k}"), &format!("{rule}_ADDED")),
                Some(ov) if uv > ov => {
                    push(out, &format!("{path}/{k}"), &format!("{rule}_INCREASED"))
                }
                _ => {}
            }
        }
    }
    if let Some(um) = num(u, "multipleOf") {
        match num(o, "multipleOf") {
            None => push(out, &format!("{path}/multipleOf"), "MULTIPLE_OF_ADDED"),
            Some(om) if um != 0.0 && (om / um).fract() != 0.0 => {
                push(out, &format!("{path}/multipleOf"), "MULTIPLE_OF_CHANGED")
            }
            _ => {}
        }
    }
    if let Some(up) = u.get("pattern") {
        match o.get("pattern") {
            None => push(out, &format!("{path}/pattern"), "PATTERN_ADDED"),
            Some(op) if op != up => push(out, &format!("{path}/pattern"), "PATTERN_CHANGED"),
            _ => {}
        }
    }
    if u.get("uniqueItems") == Some(&Value::Bool(true))
        && o.get("uniqueItems") != Some(&Value::Bool(true))
    {
        push(out, &format!("{path}/uniqueItems"), "UNIQUE_ITEMS_ADDED");
    }

    diff_object(o, u, path, out);
    diff_array(o, u, path, out);
    diff_combined(o, u, path, out);
}

fn diff_object(o: &Map<String, Value>, u: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let empty = Map::new();
    let op = o
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let up = u
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required = |m: &Map<String, Value>| -> Vec<String> {
        m.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (oreq, ureq) = (required(o), required(u));

    // required: a newly required property (without a default) rejects old data that lacks it.
    for name in &ureq {
        if !oreq.contains(name) {
            let has_default = up
                .get(name)
                .and_then(Value::as_object)
                .is_some_and(|p| p.contains_key("default"));
            if !has_default {
                push(
                    out,
                    &format!("{path}/required/{name}"),
                    "REQUIRED_ATTRIBUTE_ADDED",
                );
            }
        }
    }

    for (name, us) in up {
        let p = format!("{path}/properties/{name}");
        match op.get(name) {
            Some(os) => diff(os, us, &p, out),
            None => match model(o) {
                // Old data may already hold this name with any value.
                Model::Open => {
                    if !is_empty_schema(us) {
                        push(out, &p, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL");
                    }
                }
                // Old data never held it: adding it is compatible (if required, the
                // `required` rule above reports it).
                Model::Closed => {}
                // Old data may hold it with a value valid under additionalProperties.
                Model::Partial(extra) => {
                    let before = out.len();
                    diff(extra, us, &p, out);
                    if out.len() > before {
                        out.truncate(before);
                        push(
                            out,
                            &p,
                            "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        );
                    }
                }
            },
        }
    }
    for (name, os) in op {
        if up.contains_key(name) {
            continue;
        }
        let p = format!("{path}/properties/{name}");
        match model(u) {
            Model::Open => {}
            Model::Closed => {
                if os != &Value::Bool(false) {
                    push(out, &p, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL");
                }
            }
            Model::Partial(extra) => {
                let before = out.len();
                diff(os, extra, &p, out);
                if out.len() > before {
                    out.truncate(before);
                    push(
                        out,
                        &p,
                        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    );
                }
            }
        }
    }

    // additionalProperties: opening a model is compatible, closing or narrowing it is not.
    let p = format!("{path}/additionalProperties");
    match (model(o), model(u)) {
        (_, Model::Open) | (Model::Closed, _) => {}
        (Model::Open, Model::Closed) | (Model::Partial(_), Model::Closed) => {
            push(out, &p, "ADDITIONAL_PROPERTIES_REMOVED")
        }
        (Model::Open, Model::Partial(_)) => push(out, &p, "ADDITIONAL_PROPERTIES_NARROWED"),
        (Model::Partial(a), Model::Partial(b)) => diff(a, b, &p, out),
    }
}

fn diff_array(o: &Map<String, Value>, u: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let p = format!("{path}/items");
    match (o.get("items"), u.get("items")) {
        (_, None) => {}
        (None, Some(ui)) => {
            if !is_empty_schema(ui) {
                push(out, &p, "ITEMS_NARROWED");
            }
        }
        (Some(Value::Array(oi)), Some(Value::Array(ui))) => {
            for (i, (a, b)) in oi.iter().zip(ui.iter()).enumerate() {
                diff(a, b, &format!("{p}/{i}"), out);
            }
            if ui.len() > oi.len() {
                push(out, &p, "ITEM_ADDED");
            }
        }
        (Some(oi), Some(ui)) if oi.is_array() != ui.is_array() => push(out, &p, "ITEMS_CHANGED"),
        (Some(oi), Some(ui)) => diff(oi, ui, &p, out),
    }
}

/// anyOf / oneOf: each alternative of the original must be readable by some alternative of
/// the update (alternatives added are compatible). allOf and not must be unchanged.
fn diff_combined(
    o: &Map<String, Value>,
    u: &Map<String, Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    for key in ["anyOf", "oneOf"] {
        let p = format!("{path}/{key}");
        match (
            o.get(key).and_then(Value::as_array),
            u.get(key).and_then(Value::as_array),
        ) {
            (_, None) => {}
            (None, Some(_)) => push(out, &p, "COMBINED_TYPE_CHANGED"),
            (Some(oa), Some(ua)) => {
                let all_covered = oa
                    .iter()
                    .all(|a| ua.iter().any(|b| compare(a, b).is_empty()));
                if !all_covered {
                    push(out, &p, "SUM_TYPE_NARROWED");
                }
            }
        }
    }
    for key in ["allOf", "not"] {
        if let Some(uv) = u.get(key) {
            if o.get(key) != Some(uv) {
                push(out, &format!("{path}/{key}"), "COMBINED_TYPE_CHANGED");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_to_references_are_inlined_for_comparison() {
        let mut refs = std::collections::HashMap::new();
        let old_addr =
            parse(r#"{"type":"object","properties":{"city":{"type":"string"}}}"#).unwrap();
        let new_addr =
            parse(r#"{"type":"object","properties":{"city":{"type":"integer"}}}"#).unwrap();
        let main = parse(r#"{"type":"object","properties":{"a":{"$ref":"addr.json"}}}"#).unwrap();
        refs.insert("addr.json".to_string(), old_addr);
        let old = inline_refs(&main, &refs);
        refs.insert("addr.json".to_string(), new_addr);
        let new = inline_refs(&main, &refs);
        assert!(!compare(&old, &new).is_empty());
        assert_eq!(
            old["properties"]["a"]["properties"]["city"]["type"],
            "string"
        );
    }
    use serde_json::json;

    /// BACKWARD: the new schema reads data written with the old one.
    fn backward(old: Value, new: Value) -> bool {
        check(Level::Backward, &new, &[(1, old)]).is_empty()
    }
    fn forward(old: Value, new: Value) -> bool {
        check(Level::Forward, &new, &[(1, old)]).is_empty()
    }

    fn obj(props: Value, extra: Value) -> Value {
        let mut v = json!({"type": "object", "properties": props});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn parse_accepts_objects_and_booleans_only() {
        assert!(parse(r#"{"type":"string"}"#).is_ok());
        assert!(parse("true").is_ok());
        assert!(parse("[1]").is_err());
        assert!(parse("42").is_err());
        assert!(parse(r#"{"type":"strin"}"#).is_err());
        assert!(parse(r#"{"type":"object""#)
            .unwrap_err()
            .contains("malformed JSON"));
        assert!(parse(r#"{"properties":{"a":3}}"#)
            .unwrap_err()
            .contains("#/properties/a"));
    }

    #[test]
    fn canonical_ignores_whitespace_and_key_order() {
        let a = parse(r#"{"type": "object", "properties": {"b": {"type":"string"}, "a": {}}}"#)
            .unwrap();
        let b = parse(r#"{"properties":{"a":{},"b":{"type":"string"}},"type":"object"}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"properties":{"a":{},"b":{"type":"string"}},"type":"object"}"#
        );
    }

    #[test]
    fn type_change_is_incompatible_but_integer_to_number_widens() {
        assert!(!backward(
            json!({"type":"string"}),
            json!({"type":"integer"})
        ));
        assert!(backward(
            json!({"type":"integer"}),
            json!({"type":"number"})
        ));
        assert!(!forward(
            json!({"type":"integer"}),
            json!({"type":"number"})
        ));
        assert!(backward(
            json!({"type":"string"}),
            json!({"type":["string","null"]})
        ));
    }

    #[test]
    fn property_added_to_closed_model_is_backward_compatible() {
        let old = obj(
            json!({"a":{"type":"string"}}),
            json!({"additionalProperties":false}),
        );
        let new = obj(
            json!({"a":{"type":"string"},"b":{"type":"integer"}}),
            json!({"additionalProperties":false}),
        );
        assert!(backward(old.clone(), new.clone()));
        // Forward: the old closed schema cannot read data carrying b.
        assert!(!forward(old, new));
    }

    #[test]
    fn property_added_to_open_model_is_backward_incompatible() {
        let old = obj(json!({"a":{"type":"string"}}), json!({}));
        let new = obj(
            json!({"a":{"type":"string"},"b":{"type":"integer"}}),
            json!({}),
        );
        let r = check(Level::Backward, &new, &[(1, old.clone())]);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("#/properties/b"));
        assert!(r[0].contains("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"));
        // Forward: the old open schema reads data carrying b.
        assert!(forward(old.clone(), new));
        // A property with an empty schema is compatible even in an open model.
        let new = obj(json!({"a":{"type":"string"},"b":{}}), json!({}));
        assert!(backward(old, new));
    }

    #[test]
    fn property_removed_from_open_model_is_backward_compatible() {
        let old = obj(
            json!({"a":{"type":"string"},"b":{"type":"integer"}}),
            json!({}),
        );
        let new = obj(json!({"a":{"type":"string"}}), json!({}));
        assert!(backward(old.clone(), new.clone()));
        assert!(!forward(old, new));
    }

    #[test]
    fn property_removed_from_closed_model_is_backward_incompatible() {
        let c = json!({"additionalProperties":false});
        let old = obj(
            json!({"a":{"type":"string"},"b":{"type":"integer"}}),
            c.clone(),
        );
        let new = obj(json!({"a":{"type":"string"}}), c);
        let r = check(Level::Backward, &new, &[(1, old.clone())]);
        assert!(r[0].contains("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"));
        assert!(forward(old, new));
    }

    #[test]
    fn partially_open_model_covers_added_and_removed_properties() {
        let p = json!({"additionalProperties":{"type":"string"}});
        let old = obj(json!({}), p.clone());
        assert!(backward(
            old.clone(),
            obj(json!({"b":{"type":"string"}}), p.clone())
        ));
        assert!(!backward(old, obj(json!({"b":{"type":"integer"}}), p)));
    }

    #[test]
    fn additional_properties_opened_is_compatible_closed_is_not() {
        let open = obj(json!({"a":{"type":"string"}}), json!({}));
        let closed = obj(
            json!({"a":{"type":"string"}}),
            json!({"additionalProperties":false}),
        );
        assert!(backward(closed.clone(), open.clone()));
        let r = check(Level::Backward, &closed, &[(1, open)]);
        assert!(r[0].contains("ADDITIONAL_PROPERTIES_REMOVED"));
    }

    #[test]
    fn required_added_is_backward_incompatible_removed_is_compatible() {
        let props = json!({"a":{"type":"string"},"b":{"type":"string"}});
        let loose = obj(props.clone(), json!({"required":["a"]}));
        let strict = obj(props, json!({"required":["a","b"]}));
        let r = check(Level::Backward, &strict, &[(1, loose.clone())]);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("#/required/b") && r[0].contains("REQUIRED_ATTRIBUTE_ADDED"));
        assert!(backward(strict.clone(), loose.clone()));
        assert!(forward(loose.clone(), strict.clone()));
        // Required with a default is compatible.
        let with_default = obj(
            json!({"a":{"type":"string"},"b":{"type":"string","default":"x"}}),
            json!({"required":["a","b"]}),
        );
        assert!(backward(loose, with_default));
    }

    #[test]
    fn enum_values_added_backward_compatible_removed_not() {
        let small = json!({"type":"string","enum":["A","B"]});
        let big = json!({"type":"string","enum":["A","B","C"]});
        assert!(backward(small.clone(), big.clone()));
        assert!(!forward(small.clone(), big.clone()));
        let r = check(Level::Backward, &small, &[(1, big)]);
        assert!(r[0].contains("ENUM_ARRAY_NARROWED"));
    }

    #[test]
    fn bounds_widening_is_compatible_narrowing_is_not() {
        let a = json!({"type":"string","maxLength":10,"minLength":2});
        assert!(backward(
            a.clone(),
            json!({"type":"string","maxLength":20,"minLength":1})
        ));
        assert!(backward(a.clone(), json!({"type":"string"})));
        let r = check(
            Level::Backward,
            &json!({"type":"string","maxLength":5,"minLength":2}),
            &[(1, a.clone())],
        );
        assert!(r[0].contains("#/maxLength") && r[0].contains("MAX_LENGTH_DECREASED"));
        assert!(!backward(
            a,
            json!({"type":"string","maxLength":10,"minLength":3})
        ));
        let n = json!({"type":"number","minimum":0,"maximum":100});
        assert!(backward(
            n.clone(),
            json!({"type":"number","minimum":-1,"maximum":200})
        ));
        assert!(!backward(
            n.clone(),
            json!({"type":"number","minimum":1,"maximum":100})
        ));
        assert!(!backward(
            n,
            json!({"type":"number","minimum":0,"maximum":99})
        ));
        assert!(!backward(
            json!({"type":"number"}),
            json!({"type":"number","maximum":9})
        ));
    }

    #[test]
    fn nested_objects_and_array_items_are_checked_recursively() {
        let old = obj(
            json!({"tags":{"type":"array","items":{"type":"integer"}},
                   "addr":{"type":"object","properties":{"zip":{"type":"string"}}}}),
            json!({}),
        );
        let widened = obj(
            json!({"tags":{"type":"array","items":{"type":"number"}},
                   "addr":{"type":"object","properties":{"zip":{"type":"string"}}}}),
            json!({}),
        );
        assert!(backward(old.clone(), widened));
        let broken = obj(
            json!({"tags":{"type":"array","items":{"type":"string"}},
                   "addr":{"type":"object","properties":{"zip":{"type":"integer"}}}}),
            json!({}),
        );
        let r = check(Level::Backward, &broken, &[(1, old)]);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r.iter().any(|m| m.contains("#/properties/tags/items")));
        assert!(r
            .iter()
            .any(|m| m.contains("#/properties/addr/properties/zip")));
    }

    #[test]
    fn full_and_transitive_levels() {
        let c = json!({"additionalProperties":false});
        let v1 = obj(json!({"a":{"type":"string"}}), c.clone());
        let v2 = obj(
            json!({"a":{"type":"string"},"b":{"type":"string"}}),
            c.clone(),
        );
        // Adding an optional property to a closed model: backward only.
        assert!(!check(Level::Full, &v2, &[(1, v1.clone())]).is_empty());
        // Transitive checks every version; latest-only does not (history registered at NONE).
        let hist = [
            (1, json!({"type":"string"})),
            (2, json!({"type":"integer"})),
        ];
        let v3 = json!({"type":"number"});
        assert!(check(Level::Backward, &v3, &hist).is_empty());
        let r = check(Level::BackwardTransitive, &v3, &hist);
        assert!(r.len() == 1 && r[0].contains("version 1") && r[0].contains("TYPE_CHANGED"));
        assert!(check(Level::None, &json!(false), &hist).is_empty());
    }
}
