//! Names that become file or object paths (topics, partitions, namespaces, tables, subjects,
//! mounts). Every path builder checks its names here, where the path is built, and not only
//! where the name arrived: a name also arrives through the controller log, an object-store
//! manifest or a peer broker, and a name like `..` or `a/../../x` must never climb out of the
//! directory it is meant for.

/// Why a name cannot be used in a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name {name:?} cannot be a path segment: {why}")]
    Unsafe {
        kind: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("{0}")]
    Topic(String),
}

/// `name` if it is exactly one safe path segment: not empty, not `.` or `..`, and without a
/// path separator (`/` or `\`) or NUL.
pub fn path_segment<'a>(kind: &'static str, name: &'a str) -> Result<&'a str, NameError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it is '.' or '..'"
    } else if name.contains(['/', '\\']) {
        "it contains a path separator"
    } else if name.contains('\0') {
        "it contains NUL"
    } else {
        return Ok(name);
    };
    Err(NameError::Unsafe {
        kind,
        name: name.chars().take(300).collect(),
        why,
    })
}

/// `name` if it is a legal Kafka topic name ([`crate::config::validate_topic_name`]: 1 to 249
/// of `[a-zA-Z0-9._-]`, not `.` or `..`), which also makes it a safe path segment.
pub fn topic(name: &str) -> Result<&str, NameError> {
    crate::config::validate_topic_name(name).map_err(NameError::Topic)?;
    path_segment("topic", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_safe_segments_pass() {
        for ok in ["orders", "a.b", "...", "x-1_y", "ünï code"] {
            assert_eq!(path_segment("t", ok), Ok(ok));
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/", "x\0"] {
            assert!(path_segment("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topics_follow_kafka_rules() {
        assert!(topic("orders.v1_x-2").is_ok());
        assert!(topic(&"a".repeat(249)).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../../../x",
            "a/b",
            "a b",
            "é",
            &"a".repeat(250),
        ] {
            assert!(topic(bad).is_err(), "{bad:?}");
        }
    }
}
