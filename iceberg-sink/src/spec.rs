//! `iceberg.partition.spec`: a parenthesised, comma-separated list of partition terms over the
//! table's columns, Redpanda's syntax:
//!
//! ```text
//! (hour(kafka.timestamp))                      the default
//! (bucket(16, key), day(kafka.timestamp))
//! (identity(kafka.partition))  or  (kafka.partition)
//! (truncate(4, value))
//! ()                                           unpartitioned
//! ```
//!
//! Transforms: `identity`, `bucket(N, col)`, `truncate(W, col)`, `hour`, `day`, `month`,
//! `year`. Columns are dotted paths into the table schema; `redpanda.` names the `kafka`
//! metadata struct, so Redpanda's `(hour(redpanda.timestamp))` works unchanged.

use iceberg::spec::{Schema, Transform, UnboundPartitionSpec};

use crate::error::SinkError;

/// One parsed term: transform and source column path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub transform: Transform,
    pub column: String,
}

/// Parses a spec string without a schema (so bad syntax is caught when the config is read).
pub fn parse(spec: &str) -> Result<Vec<Term>, SinkError> {
    let bad = |why: &str| SinkError::PartitionSpec(format!("'{spec}': {why}"));
    let s = spec.trim();
    let inner = if s.is_empty() {
        ""
    } else {
        s.strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad("must be wrapped in parentheses, e.g. (hour(kafka.timestamp))"))?
    };
    let mut terms = Vec::new();
    for part in split_top(inner).map_err(&bad)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let term = match part.find('(') {
            None => Term {
                transform: Transform::Identity,
                column: column(part),
            },
            Some(open) => {
                let name = part[..open].trim().to_ascii_lowercase();
                let args = part[open + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| bad("unbalanced parentheses"))?;
                let args: Vec<&str> = args.split(',').map(str::trim).collect();
                let num = |s: &str| -> Result<u32, SinkError> {
                    s.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(&format!("'{s}' is not a positive integer")))
                };
                match (name.as_str(), args.as_slice()) {
                    ("identity", [c]) => Term {
                        transform: Transform::Identity,
                        column: column(c),
                    },
                    ("hour", [c]) => Term {
                        transform: Transform::Hour,
                        column: column(c),
                    },
                    ("day", [c]) => Term {
                        transform: Transform::Day,
                        column: column(c),
                    },
                    ("month", [c]) => Term {
                        transform: Transform::Month,
                        column: column(c),
                    },
                    ("year", [c]) => Term {
                        transform: Transform::Year,
                        column: column(c),
                    },
                    ("bucket", [n, c]) => Term {
                        transform: Transform::Bucket(num(n)?),
                        column: column(c),
                    },
                    ("truncate", [w, c]) => Term {
                        transform: Transform::Truncate(num(w)?),
                        column: column(c),
                    },
                    _ => {
                        return Err(bad(&format!(
                            "unknown term '{part}'; use identity, bucket(N, col), truncate(W, col), hour, day, month or year"
                        )))
                    }
                }
            }
        };
        if term.column.is_empty() {
            return Err(bad("empty column name"));
        }
        terms.push(term);
    }
    Ok(terms)
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, &'static str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses");
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses");
    }
    out.push(&s[start..]);
    Ok(out)
}

fn column(c: &str) -> String {
    let c = c.trim();
    match c.strip_prefix("redpanda.") {
        Some(rest) => format!("kafka.{rest}"),
        None => c.to_string(),
    }
}

/// Binds terms to a schema's columns; partition fields are named `<column>_<transform>` with
/// dots as underscores (identity keeps the column's name).
pub fn bind(terms: &[Term], schema: &Schema) -> Result<UnboundPartitionSpec, SinkError> {
    let mut b = UnboundPartitionSpec::builder();
    for t in terms {
        let field = schema.field_by_name(&t.column).ok_or_else(|| {
            SinkError::PartitionSpec(format!("no column '{}' in the table schema", t.column))
        })?;
        let base = t.column.replace('.', "_");
        let name = match t.transform {
            Transform::Identity => base,
            Transform::Bucket(n) => format!("{base}_bucket_{n}"),
            Transform::Truncate(w) => format!("{base}_trunc_{w}"),
            other => format!("{base}_{other}"),
        };
        b = b
            .add_partition_field(field.id, name, t.transform)
            .map_err(|e| SinkError::PartitionSpec(e.to_string()))?;
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redpanda_and_own_forms() {
        let t = parse("(hour(redpanda.timestamp))").unwrap();
        assert_eq!(
            t,
            vec![Term {
                transform: Transform::Hour,
                column: "kafka.timestamp".into()
            }]
        );
        let t = parse(" (bucket(16, key), day(kafka.timestamp), kafka.partition) ").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].transform, Transform::Bucket(16));
        assert_eq!(t[2].transform, Transform::Identity);
        assert!(parse("()").unwrap().is_empty());
        assert!(parse("").unwrap().is_empty());
        assert!(parse("hour(ts)").is_err());
        assert!(parse("(bucket(0, key))").is_err());
        assert!(parse("(frobnicate(key))").is_err());
        assert!(parse("(hour(ts)").is_err());
    }
}
