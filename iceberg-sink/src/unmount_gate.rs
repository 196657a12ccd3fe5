//! An Iceberg topic's translation finishes before the topic is unmounted: the unmount (single
//! broker or cluster) waits until the topic's table covers every offset up to each partition's
//! sealed end, reading the offsets the table's snapshots record. The translator keeps running
//! on a topic hidden for an unmount, so it catches up; after a mount (same topic id) it resumes
//! from the table's offsets, reading older records from the tier.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use engine::topic_jobs::UnmountGate;
use iceberg::ErrorKind;
use uuid::Uuid;

use crate::offsets;
use crate::settings::{Mode, TopicSettings};
use crate::Translator;

impl UnmountGate for Translator {
    fn caught_up<'a>(
        &'a self,
        name: &'a str,
        id: Uuid,
        ends: &'a BTreeMap<i32, (i64, i64)>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let sh = &self.shared;
            let Some(topic) = sh.broker.topics.get_internal(name) else {
                return Ok(());
            };
            let s = TopicSettings::of(&topic, &sh.broker.defaults(), &sh.config.default_namespace);
            if s.mode == Mode::Disabled {
                return Ok(());
            }
            let ident = s.table(name);
            let committed = match sh.catalog.load_table(&ident).await {
                Ok(t) => offsets::committed(t.metadata(), &id.to_string()),
                Err(e) if e.kind() == ErrorKind::TableNotFound => offsets::Offsets::new(),
                Err(e) => return Err(format!("cannot read Iceberg table {ident}: {e}")),
            };
            for (&p, &(start, end)) in ends {
                let at = committed.get(&p).copied().unwrap_or(start);
                if end > start && at < end {
                    return Err(format!(
                        "Iceberg table {ident} holds partition {p} up to offset {at} of {end}"
                    ));
                }
            }
            Ok(())
        })
    }
}
