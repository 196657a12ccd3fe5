//! What every format's compatibility check shares: Confluent's levels, and which earlier
//! versions a level names in which directions. Each format only says why a reader cannot read
//! a writer's data (`avro`, `json_schema`, `protobuf`).

/// A compatibility level, as Confluent names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "BACKWARD" => Level::Backward,
            "BACKWARD_TRANSITIVE" => Level::BackwardTransitive,
            "FORWARD" => Level::Forward,
            "FORWARD_TRANSITIVE" => Level::ForwardTransitive,
            "FULL" => Level::Full,
            "FULL_TRANSITIVE" => Level::FullTransitive,
            "NONE" => Level::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
            Level::None => "NONE",
        }
    }

    /// Whether the new schema is checked against every earlier version, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
}

/// The part of a compatibility check every format shares: which earlier versions `level`
/// names (the latest, or all for _TRANSITIVE) and in which directions (BACKWARD: the new
/// schema reads old data; FORWARD: old schemas read new data; FULL: both).
/// `incompatible(reader, writer)` gives the format's reasons for one direction.
pub fn check_versions<S>(
    level: Level,
    new: &S,
    existing: &[(i32, S)],
    incompatible: impl Fn(&S, &S) -> Vec<String>,
) -> Vec<String> {
    let against = if level.transitive() {
        existing
    } else {
        &existing[existing.len().saturating_sub(1)..]
    };
    let backward = matches!(
        level,
        Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
    );
    let forward = matches!(
        level,
        Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
    );
    let name = level.name();
    let mut reasons = Vec::new();
    for (version, old) in against {
        if backward {
            reasons.extend(incompatible(new, old).into_iter().map(|d| {
                format!(
                    "{name}: the new schema cannot read data written with version {version}: {d}"
                )
            }));
        }
        if forward {
            reasons.extend(incompatible(old, new).into_iter().map(|d| {
                format!(
                    "{name}: version {version} cannot read data written with the new schema: {d}"
                )
            }));
        }
    }
    reasons
}
