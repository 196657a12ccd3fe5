//! A round as it travels from a partition leader's translator to the committer broker
//! (`POST` [`ROUNDS_PATH`] on its Iceberg catalog listener), and the answer.
//!
//! Data files travel in the iceberg crate's own data-file JSON (the REST spec's `DataFile`
//! shape, as `iceberg::spec::serialize_data_file_to_json` writes it), which needs the
//! table's partition type and schema to read back: the round names the schema and partition
//! spec it was written with.

use std::collections::BTreeMap;

use iceberg::spec::{deserialize_data_file_from_json, serialize_data_file_to_json, DataFile};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{batch, Answer, Handover};
use crate::commit::Round;
use crate::offsets::{self, Offsets};

/// The committer's route, on the Iceberg catalog listener (not part of the Iceberg REST API).
pub const ROUNDS_PATH: &str = "/icestream/v1/iceberg/rounds";

/// One partition's part of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionBody {
    pub partition: i32,
    /// The table's next offset the round started from (`null`: the table had none).
    pub from: Option<i64>,
    /// The next offset after the round.
    pub to: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundBody {
    pub topic: String,
    pub topic_id: Uuid,
    pub namespace: Vec<String>,
    pub table: String,
    /// The schema and partition spec the data files were written with.
    pub schema_id: i32,
    pub partition_spec_id: i32,
    pub partitions: Vec<PartitionBody>,
    /// The snapshot summary's `icestream.kafka.offset-ranges` part of this round.
    pub offset_ranges: String,
    pub data_files: Vec<serde_json::Value>,
}

/// The committer's answer to a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AnswerBody {
    Committed { offsets: BTreeMap<String, i64> },
    Superseded { offsets: BTreeMap<String, i64> },
    NotCommitter { leader: Option<i32> },
}

/// A 4xx/5xx answer's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl RoundBody {
    /// The body for `h`, whose files were written into `table` (as the sender has it).
    pub fn of(h: &Handover, table: &Table) -> Result<Self, String> {
        let meta = table.metadata();
        let schema = meta
            .schema_by_id(h.schema_id)
            .ok_or_else(|| format!("schema {} is not in the table", h.schema_id))?;
        let spec = meta
            .partition_spec_by_id(h.partition_spec_id)
            .ok_or_else(|| format!("partition spec {} is not in the table", h.partition_spec_id))?;
        let ptype = spec.partition_type(schema).map_err(|e| e.to_string())?;
        let data_files = h
            .round
            .files
            .iter()
            .map(|f| {
                let s = serialize_data_file_to_json(f.clone(), &ptype, meta.format_version())
                    .map_err(|e| e.to_string())?;
                serde_json::from_str(&s).map_err(|e| e.to_string())
            })
            .collect::<Result<_, String>>()?;
        Ok(RoundBody {
            topic: h.topic.clone(),
            topic_id: h.topic_id,
            namespace: h.table.namespace().as_ref().clone(),
            table: h.table.name().to_string(),
            schema_id: h.schema_id,
            partition_spec_id: h.partition_spec_id,
            partitions: h
                .round
                .advance
                .iter()
                .map(|&(partition, from, to)| PartitionBody {
                    partition,
                    from,
                    to,
                })
                .collect(),
            offset_ranges: offsets::encode_ranges(&h.round.ranges),
            data_files,
        })
    }

    /// The table the round names, checked for shape only.
    pub fn ident(&self) -> Result<TableIdent, String> {
        let ns = NamespaceIdent::from_vec(self.namespace.clone()).map_err(|e| e.to_string())?;
        if self.table.is_empty() {
            return Err("empty table name".into());
        }
        Ok(TableIdent::new(ns, self.table.clone()))
    }

    /// Reads the round back against the committer's `table`; every error is the sender's.
    pub fn into_handover(self, table: &Table) -> Result<Handover, String> {
        let ident = self.ident()?;
        let advance: Vec<_> = self
            .partitions
            .iter()
            .map(|p| (p.partition, p.from, p.to))
            .collect();
        batch::check(&advance)?;
        let ranges = decode_ranges(&self.offset_ranges)
            .ok_or_else(|| format!("malformed offset_ranges '{}'", self.offset_ranges))?;
        for (p, &(first, last)) in &ranges {
            let Some(&(_, from, to)) = advance.iter().find(|a| a.0 == *p) else {
                return Err(format!(
                    "offset_ranges name partition {p}, which the round does not advance"
                ));
            };
            if first > last || first < from.unwrap_or(0) || last >= to {
                return Err(format!(
                    "offset range {first}-{last} of partition {p} is outside the round"
                ));
            }
        }
        if self.data_files.is_empty() {
            return Err("the round has no data files".into());
        }
        let meta = table.metadata();
        let schema = meta
            .schema_by_id(self.schema_id)
            .ok_or_else(|| format!("schema {} is not in table {ident}", self.schema_id))?;
        let spec = meta
            .partition_spec_by_id(self.partition_spec_id)
            .ok_or_else(|| {
                format!(
                    "partition spec {} is not in table {ident}",
                    self.partition_spec_id
                )
            })?;
        let ptype = spec.partition_type(schema).map_err(|e| e.to_string())?;
        // Data files live under the table's location: a round cannot make the table point
        // at anything else.
        let prefix = format!("{}/", meta.location().trim_end_matches('/'));
        let files = self
            .data_files
            .iter()
            .map(|v| {
                let f: DataFile = deserialize_data_file_from_json(
                    &v.to_string(),
                    self.partition_spec_id,
                    &ptype,
                    schema,
                )
                .map_err(|e| format!("malformed data file: {e}"))?;
                if !f.file_path().starts_with(&prefix) || f.file_path().contains("/../") {
                    return Err(format!(
                        "data file {} is not under the table's location {prefix}",
                        f.file_path()
                    ));
                }
                Ok(f)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Handover {
            topic: self.topic,
            topic_id: self.topic_id,
            table: ident,
            schema_id: self.schema_id,
            partition_spec_id: self.partition_spec_id,
            round: Round {
                advance,
                files,
                ranges,
            },
        })
    }
}

impl AnswerBody {
    pub fn of(a: &Answer) -> Self {
        let wire = |o: &Offsets| o.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        match a {
            Answer::Committed { offsets } => AnswerBody::Committed {
                offsets: wire(offsets),
            },
            Answer::Superseded { offsets } => AnswerBody::Superseded {
                offsets: wire(offsets),
            },
            Answer::NotCommitter { leader } => AnswerBody::NotCommitter { leader: *leader },
        }
    }

    pub fn into_answer(self) -> Result<Answer, String> {
        let local = |o: BTreeMap<String, i64>| -> Result<Offsets, String> {
            o.into_iter()
                .map(|(p, n)| {
                    p.parse::<i32>()
                        .map(|p| (p, n))
                        .map_err(|_| format!("partition '{p}' in the answer"))
                })
                .collect()
        };
        Ok(match self {
            AnswerBody::Committed { offsets } => Answer::Committed {
                offsets: local(offsets)?,
            },
            AnswerBody::Superseded { offsets } => Answer::Superseded {
                offsets: local(offsets)?,
            },
            AnswerBody::NotCommitter { leader } => Answer::NotCommitter { leader },
        })
    }
}

/// `0=1000-1199,1=900-979` back into its map (see [`offsets::encode_ranges`]).
pub fn decode_ranges(s: &str) -> Option<BTreeMap<i32, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (p, r) = part.split_once('=')?;
        let (a, b) = r.split_once('-')?;
        let p: i32 = p.trim().parse().ok()?;
        if out
            .insert(p, (a.trim().parse().ok()?, b.trim().parse().ok()?))
            .is_some()
        {
            return None;
        }
    }
    Some(out)
}
