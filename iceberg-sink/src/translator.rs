//! The translator: makes Iceberg topics' logs into table snapshots, off the produce path.
//!
//! One task per Iceberg topic. Each round reads every partition from the offsets the table
//! already covers up to the high watermark seen at the round's start (local and tiered
//! segments alike, through [`engine::Broker::read_log`]), writes the records as Parquet data
//! files into the table's location and hands the round to the topic's committer
//! ([`crate::committer`]), which appends it in a snapshot whose summary records the new
//! offsets ([`crate::offsets`]). The table is the only record of progress: after a crash, a
//! failed or superseded round the task reloads it and resumes from what it says, so every
//! record lands exactly once (orphan data files of an uncommitted round are never referenced).
//!
//! Rounds start once data has waited half of `iceberg.target.lag.ms`, or at once when much is
//! pending, so files grow with throughput instead of one per produce.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use engine::Broker;
use iceberg::spec::Schema;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent};
use kafka_protocol::records::Record;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::commit;
use crate::committer::{self, Answer, Committer, Handover};
use crate::decode::SchemaSource;
use crate::dlq::{DeadLetters, Letter};
use crate::error::SinkError;
use crate::files;
use crate::key_value;
use crate::metrics::Metrics;
use crate::offsets::{self, Offsets, Span};
use crate::schema_mode::{self, SchemaLayout};
use crate::settings::{Mode, TopicSettings};
use crate::status::{SnapshotInfo, TopicStatus};

/// Broker-wide translator settings.
#[derive(Debug, Clone)]
pub struct TranslatorConfig {
    /// Namespace of tables whose topic sets no `iceberg.namespace`.
    pub default_namespace: String,
    /// Snapshot expiry: always keep this many newest snapshots...
    pub snapshots_keep: usize,
    /// ...and expire older ones past this age.
    pub snapshot_max_age_ms: i64,
    /// Stored bytes one round reads at most (bounds memory and a round's file size).
    pub round_bytes: usize,
    /// Pending records that start a round before the target lag is half used.
    pub eager_records: i64,
    /// Whether the catalog is shared with the other brokers of a cluster (an external REST
    /// catalog): then each partition is translated only by its Raft leader, and the leader of
    /// a topic's partition 0 commits its rounds. The built-in catalog is the broker's own, so
    /// it gets every partition the broker replicates, committed by the broker itself.
    pub shared_catalog: bool,
}

impl Default for TranslatorConfig {
    fn default() -> Self {
        TranslatorConfig {
            default_namespace: "kafka".into(),
            snapshots_keep: 100,
            snapshot_max_age_ms: 24 * 3600 * 1000,
            round_bytes: 128 << 20,
            eager_records: 1_000_000,
            shared_catalog: false,
        }
    }
}

/// Records per Arrow batch.
const BATCH_ROWS: usize = 65_536;
/// Bytes asked of the log per read.
const READ_BYTES: usize = 4 << 20;

pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub catalog: Arc<dyn Catalog>,
    pub catalog_name: String,
    /// The schema registry, for the schema-driven modes.
    pub schemas: Option<Arc<dyn SchemaSource>>,
    pub config: TranslatorConfig,
    pub metrics: Metrics,
    pub status: Mutex<HashMap<String, TopicStatus>>,
    /// Rounds this broker commits, its own and other partition leaders'.
    pub(crate) committer: Committer,
}

/// Starts and stops one task per Iceberg topic as topics and their configs change.
pub struct Translator {
    pub(crate) shared: Arc<Shared>,
}

struct Running {
    topic_id: Uuid,
    settings: TopicSettings,
    task: JoinHandle<()>,
}

impl Translator {
    pub fn new(
        broker: Arc<Broker>,
        catalog: Arc<dyn Catalog>,
        catalog_name: String,
        schemas: Option<Arc<dyn SchemaSource>>,
        config: TranslatorConfig,
    ) -> Arc<Self> {
        Arc::new(Translator {
            shared: Arc::new(Shared {
                broker,
                catalog,
                catalog_name,
                schemas,
                config,
                metrics: Metrics::default(),
                status: Mutex::new(HashMap::new()),
                committer: Committer::default(),
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Runs the supervisor until the returned handle is aborted.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut running: HashMap<String, Running> = HashMap::new();
            loop {
                me.supervise(&mut running).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    async fn supervise(&self, running: &mut HashMap<String, Running>) {
        let sh = &self.shared;
        let defaults = &sh.broker.defaults();
        let mut wanted: HashMap<String, (Uuid, TopicSettings)> = HashMap::new();
        // Topics hidden for an unmount too: their translation finishes before they go.
        for t in sh.broker.topics.all_internal() {
            let s = TopicSettings::of(&t, defaults, &sh.config.default_namespace);
            if s.mode != Mode::Disabled {
                wanted.insert(t.name.clone(), (t.id, s));
            }
        }
        // Stop tasks whose topic went away, was recreated, or turned Iceberg off.
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(&name)
                .is_some_and(|(id, _)| *id == running[&name].topic_id);
            if keep {
                continue;
            }
            let Some(r) = running.remove(&name) else {
                continue;
            };
            r.task.abort();
            let _ = r.task.await;
            let deleted = sh
                .broker
                .topics
                .get_internal(&name)
                .is_none_or(|t| t.id != r.topic_id);
            if deleted {
                sh.status.lock().remove(&name);
                sh.committer.forget(&r.settings.table(&name));
                // An unmounted topic keeps its table for the mount.
                let unmounted = sh.broker.unmounted.lock().contains(&r.topic_id);
                if r.settings.delete && !unmounted {
                    self.drop_tables(&name, &r.settings).await;
                }
            }
        }
        for (name, (id, s)) in wanted {
            let restart = running.get(&name).is_none_or(|r| r.task.is_finished());
            if let Some(r) = running.get_mut(&name) {
                r.settings = s.clone();
            }
            if restart {
                let task = TopicTask::new(sh.clone(), name.clone(), id);
                running.insert(
                    name,
                    Running {
                        topic_id: id,
                        settings: s,
                        task: tokio::spawn(task.run()),
                    },
                );
            }
        }
    }

    /// `iceberg.delete=true`: the topic is gone, so are its table and DLQ table (with files).
    async fn drop_tables(&self, topic: &str, s: &TopicSettings) {
        for ident in [s.table(topic), s.dlq_table(topic)] {
            match self.shared.catalog.purge_table(&ident).await {
                Ok(()) => {
                    tracing::info!(table = %ident, "dropped the Iceberg table of a deleted topic")
                }
                Err(e) if e.kind() == ErrorKind::TableNotFound => {}
                Err(e) => {
                    tracing::warn!(table = %ident, error = %e, "cannot drop the Iceberg table of a deleted topic")
                }
            }
        }
    }
}

/// One topic's translation state.
struct TopicTask {
    sh: Arc<Shared>,
    topic: String,
    topic_id: Uuid,
    /// The table as last loaded or committed; `None` until loaded, or when it does not exist.
    table: Option<Table>,
    ident: Option<TableIdent>,
    loaded: bool,
    /// Where the next round reads from (the next offset per partition).
    next: Offsets,
    /// The offsets the table (as last loaded or committed) covers: a round asserts that the
    /// partitions it advances still stand there ([`commit::append_all`]).
    committed: Offsets,
    /// Since when untranslated data has been waiting.
    pending_since: Option<Instant>,
    /// Schema-driven modes' decoders, compiled once per schema.
    layout: Option<SchemaLayout>,
    /// The dead-letter table and the offsets it covers.
    dlq: DeadLetters,
}

impl TopicTask {
    fn new(sh: Arc<Shared>, topic: String, topic_id: Uuid) -> Self {
        let dlq = DeadLetters::new(&topic, topic_id);
        TopicTask {
            sh,
            topic,
            topic_id,
            table: None,
            ident: None,
            loaded: false,
            next: Offsets::new(),
            committed: Offsets::new(),
            pending_since: None,
            layout: None,
            dlq,
        }
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        self.sh.metrics.touch(&Metrics::label(&self.topic));
        loop {
            let Some(topic) = self.sh.broker.topics.get_internal(&self.topic) else {
                return;
            };
            let s = TopicSettings::of(
                &topic,
                &self.sh.broker.defaults(),
                &self.sh.config.default_namespace,
            );
            let tick = Duration::from_millis((s.target_lag_ms / 10).clamp(50, 1000));
            match self.step(&s).await {
                Ok(worked) => {
                    backoff = Duration::from_millis(100);
                    self.set_error(None);
                    if !worked {
                        tokio::time::sleep(tick).await;
                    }
                }
                Err(e) => {
                    // The table is the truth: forget what we believed and reload it.
                    self.loaded = false;
                    self.table = None;
                    self.dlq.forget();
                    self.sh
                        .metrics
                        .commit_errors
                        .get_or_create(&Metrics::label(&self.topic))
                        .inc();
                    tracing::warn!(topic = %self.topic, error = %e, "Iceberg translation round failed; retrying");
                    self.set_error(Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn set_error(&self, e: Option<String>) {
        if let Some(st) = self.sh.status.lock().get_mut(&self.topic) {
            st.last_error = e;
        }
    }

    /// One round; `Ok(true)` when it committed something.
    async fn step(&mut self, s: &TopicSettings) -> Result<bool, SinkError> {
        let Some(topic) = self.sh.broker.topics.get_internal(&self.topic) else {
            return Ok(false);
        };
        let ident = s.table(&self.topic);
        if !self.loaded || self.ident.as_ref() != Some(&ident) {
            self.load(&ident).await?;
        }
        // What is pending, against the last stable offsets as of now: an open transaction's
        // records wait for its marker, and aborted ones never reach the table.
        let mut targets = Vec::with_capacity(topic.partitions.len());
        let mut pending = 0i64;
        for (p, h) in topic.partitions.iter().enumerate() {
            let p = p as i32;
            // Into a catalog the cluster shares, each partition is translated by its leader,
            // and one committer lands every leader's rounds in the table (see committer/).
            if self.sh.config.shared_catalog && !self.sh.broker.leads(&topic, p) {
                continue;
            }
            let marks = *h.marks.borrow();
            let next = self.next.get(&p).copied().unwrap_or(0).max(marks.log_start);
            pending += (marks.stable - next).max(0);
            targets.push(Span {
                partition: p,
                from: next,
                to: marks.stable,
            });
        }
        self.publish_status(s, &targets);
        let label = Metrics::label(&self.topic);
        self.sh
            .metrics
            .target_lag_ms
            .get_or_create(&label)
            .set(s.target_lag_ms as i64);
        self.sh
            .metrics
            .lag_records
            .get_or_create(&label)
            .set(pending);
        if pending == 0 {
            self.pending_since = None;
            self.sh.metrics.lag_ms.get_or_create(&label).set(0);
            return Ok(false);
        }
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        self.sh
            .metrics
            .lag_ms
            .get_or_create(&label)
            .set(since.elapsed().as_millis() as i64);
        // A topic hidden for an unmount is translated at once: the unmount waits for it.
        let unmounting = self.sh.broker.topics.get(&self.topic).is_none();
        let due = since.elapsed() >= Duration::from_millis(s.target_lag_ms / 2)
            || pending >= self.sh.config.eager_records
            || unmounting;
        if !due {
            return Ok(false);
        }
        let round_start = Instant::now();
        let read = self.read(&targets).await?;
        if read.records == 0 {
            // Only control batches or offsets retention removed: nothing to commit.
            self.advance(&targets, read.next);
            return Ok(false);
        }
        let (table, batches, letters) = match s.mode {
            Mode::KeyValue => self.prepare_key_value(&ident, s, &read).await?,
            _ => self.prepare_schema_mode(&ident, s, &read).await?,
        };
        if !letters.is_empty() {
            let n = letters.len() as u64;
            if s.drop_invalid {
                self.sh
                    .metrics
                    .dropped_records
                    .get_or_create(&label)
                    .inc_by(n);
            } else {
                let ident = s.dlq_table(&self.topic);
                let catalog = self.sh.catalog.as_ref();
                let written = (self.dlq)
                    .write(catalog, &ident, letters, &targets, &read.next)
                    .await?;
                if written > 0 {
                    self.sh
                        .metrics
                        .dlq_records
                        .get_or_create(&label)
                        .inc_by(written);
                }
            }
        }
        if batches.is_empty() {
            // Every record went to the dead-letter table (which records these offsets).
            self.advance(&targets, read.next);
            self.pending_since = Some(round_start);
            return Ok(true);
        }
        let rows_written: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let data_files = files::write(&table, batches, Uuid::new_v4().to_string()).await?;
        let (n_files, n_bytes) = (
            data_files.len() as u64,
            data_files
                .iter()
                .map(|f| f.file_size_in_bytes())
                .sum::<u64>(),
        );
        let schema_id = table.metadata().current_schema_id();
        let partition_spec_id = table.metadata().default_partition_spec_id();
        let handover = Handover {
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            table: ident.clone(),
            schema_id,
            partition_spec_id,
            round: commit::Round {
                // Partitions the round does not move are left out: claiming them would only
                // make it lose to another writer's round of them (a failover) for nothing.
                advance: targets
                    .iter()
                    .map(|s| {
                        let p = s.partition;
                        let next = read.next.get(&p).copied().unwrap_or(0);
                        (p, self.committed.get(&p).copied(), next)
                    })
                    .filter(|&(_, from, to)| from.unwrap_or(0) != to)
                    .collect(),
                files: data_files,
                ranges: read.ranges.clone(),
            },
        };
        let answer = committer::hand_over(&self.sh, &table, handover).await?;
        // The committer's commit (or another writer's) moved the table on: reload it before
        // the next round, which may evolve its schema.
        self.loaded = false;
        match answer {
            Answer::Committed { offsets } => {
                self.advance(&targets, read.next);
                self.committed = offsets;
                self.next = self.committed.clone();
                self.pending_since = Some(round_start);
                tracing::debug!(topic = %self.topic, rows = rows_written, files = n_files, bytes = n_bytes, "round committed");
                Ok(true)
            }
            Answer::Superseded { offsets } => {
                // Another writer translated these offsets (a leadership change), or an answer
                // was lost and this round is in the table already: resume from the table.
                tracing::info!(topic = %self.topic, "round superseded; resuming from the table");
                self.committed = offsets;
                self.next = self.committed.clone();
                Ok(false)
            }
            Answer::NotCommitter { .. } => Err(SinkError::Table {
                table: ident.to_string(),
                message: "no committer took the round".into(),
            }),
        }
    }

    /// Moves to the offsets a round reached, counting offsets retention removed before they
    /// were translated (the round started past them, at the log start).
    fn advance(&mut self, targets: &[Span], next: Offsets) {
        let skipped: i64 = targets
            .iter()
            .map(|s| (s.from - self.next.get(&s.partition).copied().unwrap_or(0)).max(0))
            .sum();
        if skipped > 0 {
            self.sh
                .metrics
                .skipped_records
                .get_or_create(&Metrics::label(&self.topic))
                .inc_by(skipped as u64);
        }
        self.next = next;
    }

    /// Loads the table and the offsets it covers.
    async fn load(&mut self, ident: &TableIdent) -> Result<(), SinkError> {
        match self.sh.catalog.load_table(ident).await {
            Ok(t) => {
                self.committed = offsets::committed(t.metadata(), &self.topic_id.to_string());
                self.next = self.committed.clone();
                self.table = Some(t);
            }
            Err(e) if e.kind() == ErrorKind::TableNotFound => {
                self.next = Offsets::new();
                self.committed = Offsets::new();
                self.table = None;
            }
            Err(e) => return Err(e.into()),
        }
        self.ident = Some(ident.clone());
        self.loaded = true;
        Ok(())
    }

    /// Creates the topic's table with `schema` and keeps it.
    async fn create(
        &mut self,
        ident: &TableIdent,
        s: &TopicSettings,
        schema: Schema,
    ) -> Result<Table, SinkError> {
        let t = crate::table::create_table(
            self.sh.catalog.as_ref(),
            &self.topic,
            self.topic_id,
            ident,
            &s.partition_spec,
            schema,
        )
        .await?;
        self.table = Some(t.clone());
        Ok(t)
    }

    /// `key_value`: every record is a row.
    async fn prepare_key_value<'a>(
        &mut self,
        ident: &TableIdent,
        s: &TopicSettings,
        read: &'a RoundRead,
    ) -> Result<Prepared<'a>, SinkError> {
        let table = match &self.table {
            Some(t) => t.clone(),
            None => self.create(ident, s, key_value::schema()?).await?,
        };
        let batches = key_value::batches(
            table.metadata().current_schema(),
            &read.by_partition,
            BATCH_ROWS,
        )?;
        Ok((table, batches, Vec::new()))
    }

    /// Schema-driven modes: decode values, evolve the table to take every schema version seen
    /// (a separate commit, before the data's), and set aside what cannot be written.
    async fn prepare_schema_mode<'a>(
        &mut self,
        ident: &TableIdent,
        s: &TopicSettings,
        read: &'a RoundRead,
    ) -> Result<Prepared<'a>, SinkError> {
        let source = self.sh.schemas.clone().ok_or_else(|| {
            SinkError::Layout(format!(
                "iceberg.mode={} needs the schema registry",
                s.mode.as_str()
            ))
        })?;
        let latest = s.mode == Mode::SchemaLatest;
        let topic = self.topic.clone();
        let layout = self
            .layout
            .get_or_insert_with(|| SchemaLayout::new(source, &topic, latest));
        let current = match &self.table {
            Some(t) => t.metadata().current_schema().as_ref().clone(),
            None => schema_mode::base_schema()?,
        };
        let plan = layout.plan(&read.by_partition, &current);
        let table = match self.table.clone() {
            None => self.create(ident, s, plan.target).await?,
            Some(t) => {
                match schema_mode::evolve(self.sh.catalog.as_ref(), &t, &current, &plan.target)
                    .await?
                {
                    None => t,
                    Some(t) => {
                        tracing::info!(topic = %self.topic, schema_id = t.metadata().current_schema_id(), "evolved the table schema");
                        self.table = Some(t.clone());
                        t
                    }
                }
            }
        };
        let (batches, letters) = schema_mode::prepare(
            table.metadata().current_schema(),
            plan.decoded,
            &plan.refused,
            BATCH_ROWS,
        )?;
        Ok((table, batches, letters))
    }

    /// Reads every partition from its next offset up to its target, within the round budget.
    async fn read(&self, targets: &[Span]) -> Result<RoundRead, SinkError> {
        let mut out = RoundRead {
            next: self.next.clone(),
            ..RoundRead::default()
        };
        let budget = self.sh.config.round_bytes / targets.len().max(1);
        for &Span {
            partition: p,
            from,
            to: high,
        } in targets
        {
            let mut cur = from;
            let mut used = 0usize;
            let mut recs: Vec<Record> = Vec::new();
            while cur < high && used < budget {
                let r = self
                    .sh
                    .broker
                    .read_log(&self.topic, p, cur, READ_BYTES)
                    .await?;
                if r.next_offset <= cur {
                    break;
                }
                used += r.bytes;
                cur = r.next_offset;
                recs.extend(r.records.into_iter().filter(|r| r.offset < high));
            }
            let cur = cur.min(high.max(from));
            out.next.insert(p, cur);
            if let (Some(a), Some(b)) = (recs.first(), recs.last()) {
                out.ranges.insert(p, (a.offset, b.offset));
                out.records += recs.len() as u64;
                out.by_partition.push((p, recs));
            }
        }
        Ok(out)
    }

    fn publish_status(&self, s: &TopicSettings, targets: &[Span]) {
        let snapshot = self.table.as_ref().and_then(|t| {
            t.metadata().current_snapshot().map(|sn| SnapshotInfo {
                snapshot_id: sn.snapshot_id(),
                timestamp_ms: sn.timestamp_ms(),
                summary: sn
                    .summary()
                    .additional_properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
            })
        });
        let mut st = self.sh.status.lock();
        let e = st.entry(self.topic.clone()).or_default();
        e.mode = s.mode.as_str().to_string();
        e.table = self
            .ident
            .as_ref()
            .map(|i| format!("{}.{}", i.namespace().join("."), i.name()))
            .unwrap_or_default();
        e.table_exists = self.table.is_some();
        e.location = self
            .table
            .as_ref()
            .map(|t| t.metadata().location().to_string());
        e.snapshot = snapshot;
        e.partitions = targets
            .iter()
            .map(|s| (s.partition, s.from, s.to))
            .collect();
        e.target_lag_ms = s.target_lag_ms;
        e.lag_ms = self
            .pending_since
            .map_or(0, |t| t.elapsed().as_millis() as u64);
    }
}

/// A round made ready to commit: the table (created or evolved), its batches, dead letters.
type Prepared<'a> = (Table, Vec<RecordBatch>, Vec<Letter<'a>>);

#[derive(Default)]
struct RoundRead {
    next: Offsets,
    ranges: BTreeMap<i32, (i64, i64)>,
    by_partition: Vec<(i32, Vec<Record>)>,
    records: u64,
}
