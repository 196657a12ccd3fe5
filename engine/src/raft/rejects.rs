//! Recording an inter-broker message that was dropped or refused: counted in
//! `icestream_rpc_rejected_total{reason}` and logged at warn, at most once a second per reason
//! (a peer sending garbage in a loop must not flood the log), at debug otherwise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metrics::{RejectLabels, Rejections};

/// How often one reason is logged at warn.
const WARN_EVERY: Duration = Duration::from_secs(1);

static LAST_WARN: parking_lot::Mutex<Option<HashMap<&'static str, Instant>>> =
    parking_lot::Mutex::new(None);

/// Counts and logs one rejected message; `what` says what it was and why.
pub fn note(counter: &Rejections, reason: &'static str, what: std::fmt::Arguments) {
    counter
        .get_or_create(&RejectLabels {
            reason: reason.to_string(),
        })
        .inc();
    let warn = {
        let mut last = LAST_WARN.lock();
        let last = last.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        match last.get(reason) {
            Some(t) if now.duration_since(*t) < WARN_EVERY => false,
            _ => {
                last.insert(reason, now);
                true
            }
        }
    };
    if warn {
        tracing::warn!(reason, "rpc message rejected: {what}");
    } else {
        tracing::debug!(reason, "rpc message rejected: {what}");
    }
}
