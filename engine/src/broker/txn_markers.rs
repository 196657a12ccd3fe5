//! STUB until the lead's marker path is merged (this file is replaced then): answers every
//! partition Written without writing anything.

use super::Broker;
use crate::txn::{MarkerBatch, MarkerOutcome};

pub(crate) async fn write(_b: &Broker, m: MarkerBatch) -> Vec<MarkerOutcome> {
    m.partitions
        .iter()
        .map(|_| MarkerOutcome::Written)
        .collect()
}
