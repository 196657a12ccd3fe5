//! Namespace and table names: validation, the REST path form (levels joined by 0x1F) and the
//! object-key form used for the catalog's pointers and for table locations.

use iceberg::{NamespaceIdent, TableIdent};

use super::error::{CatalogError, Result};

/// The REST spec joins the levels of a multi-level namespace in a path segment with the unit
/// separator (sent as `%1F`).
pub const NAMESPACE_SEPARATOR: char = '\u{1F}';

/// Longest accepted level or table name, in bytes.
const MAX_NAME_BYTES: usize = 255;

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(CatalogError::BadRequest(format!(
            "{kind} name must not be empty"
        )));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(CatalogError::BadRequest(format!(
            "{kind} name is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(CatalogError::BadRequest(format!(
            "{kind} name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Checks every level of a namespace.
pub fn check_namespace(ns: &NamespaceIdent) -> Result<()> {
    if ns.as_ref().is_empty() {
        return Err(CatalogError::BadRequest(
            "namespace must have at least one level".into(),
        ));
    }
    ns.as_ref()
        .iter()
        .try_for_each(|level| check_name("namespace", level))
}

pub fn check_table(ident: &TableIdent) -> Result<()> {
    check_namespace(&ident.namespace)?;
    check_name("table", &ident.name)
}

/// Parses the `{namespace}` path parameter (already percent-decoded).
pub fn namespace_from_path(raw: &str) -> Result<NamespaceIdent> {
    let levels: Vec<String> = raw.split(NAMESPACE_SEPARATOR).map(str::to_string).collect();
    let ns = NamespaceIdent::from_vec(levels)
        .map_err(|e| CatalogError::BadRequest(e.message().to_string()))?;
    check_namespace(&ns)?;
    Ok(ns)
}

/// Encodes one name for an object key or a location: ASCII letters, digits, `_` and `-` stay,
/// every other byte becomes `+HH`. The result is never `.` or `..` and has no `/`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode`]; `None` for a string `encode` cannot produce.
pub fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One key segment for a whole namespace: encoded levels joined by `.` (which `encode` never
/// emits, so the form is unambiguous).
pub fn namespace_key(ns: &NamespaceIdent) -> String {
    ns.as_ref()
        .iter()
        .map(|l| encode(l))
        .collect::<Vec<_>>()
        .join(".")
}

/// Inverse of [`namespace_key`].
pub fn namespace_from_key(key: &str) -> Option<NamespaceIdent> {
    let levels = key.split('.').map(decode).collect::<Option<Vec<_>>>()?;
    NamespaceIdent::from_vec(levels).ok()
}

/// Human-readable form for messages: levels joined by `.`.
pub fn display_namespace(ns: &NamespaceIdent) -> String {
    ns.as_ref().join(".")
}

pub fn display_table(ident: &TableIdent) -> String {
    format!("{}.{}", display_namespace(&ident.namespace), ident.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_stays_key_safe() {
        for name in [
            "orders",
            "a.b",
            "x/y",
            "..",
            "spaces here",
            "ünï",
            "+2E",
            "",
        ] {
            let e = encode(name);
            assert!(e
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b)));
            assert_eq!(decode(&e).as_deref(), Some(name));
        }
        assert_eq!(encode("orders_v2-x"), "orders_v2-x");
        assert_eq!(decode("+G1"), None);
        assert_eq!(decode("+4"), None);
    }

    #[test]
    fn namespaces_parse_from_paths_and_keys() {
        let ns = namespace_from_path("a\u{1F}b.c").unwrap();
        assert_eq!(ns.as_ref(), &vec!["a".to_string(), "b.c".to_string()]);
        assert_eq!(namespace_from_key(&namespace_key(&ns)), Some(ns));
        assert!(namespace_from_path("").is_err());
        assert!(namespace_from_path("a\u{1F}").is_err());
        assert!(namespace_from_path("a\u{1F}\n").is_err());
    }
}
