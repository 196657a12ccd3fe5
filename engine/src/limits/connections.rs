//! Connection limits shared by every listener (Kafka, RPC, the HTTP APIs): a total and a
//! per-client-IP count, handed out as RAII permits so a connection frees its slot however it
//! ends. Over a limit the caller closes the new connection at once rather than queueing it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// How many connections a listener accepts, in total and from one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_total: usize,
    pub max_per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{limit} connections open (the listener's limit)")]
    Total { limit: usize },
    #[error("{limit} connections open from {ip} (the per-IP limit)")]
    PerIp { ip: IpAddr, limit: usize },
}

/// Refusals are logged at most this often per listener: a flood must not flood the log too.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

pub struct ConnLimiter {
    listener: &'static str,
    limits: ConnLimits,
    counts: parking_lot::Mutex<Counts>,
    refused: Counter,
    /// Refusals since the last log line, and when that line was written.
    unlogged: AtomicU64,
    last_log: parking_lot::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ConnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLimiter")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish()
    }
}

/// One admitted connection's slot, released on drop.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnLimiter {
    /// `refused` counts refusals (`icestream_connections_refused_total{listener}`).
    pub fn new(listener: &'static str, limits: ConnLimits, refused: Counter) -> Arc<Self> {
        Arc::new(ConnLimiter {
            listener,
            limits,
            counts: Default::default(),
            refused,
            unlogged: AtomicU64::new(0),
            last_log: Default::default(),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Connections currently admitted.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// Admits a connection from `ip`, or counts and (rate-limited) logs its refusal.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let res = {
            let mut c = self.counts.lock();
            let per_ip = c.by_ip.get(&ip).copied().unwrap_or(0);
            if c.total >= self.limits.max_total {
                Err(Refused::Total {
                    limit: self.limits.max_total,
                })
            } else if per_ip >= self.limits.max_per_ip {
                Err(Refused::PerIp {
                    ip,
                    limit: self.limits.max_per_ip,
                })
            } else {
                c.total += 1;
                *c.by_ip.entry(ip).or_insert(0) += 1;
                Ok(())
            }
        };
        match res {
            Ok(()) => Ok(ConnPermit {
                limiter: self.clone(),
                ip,
            }),
            Err(why) => {
                self.refused.inc();
                self.log_refusal(&why);
                Err(why)
            }
        }
    }

    fn log_refusal(&self, why: &Refused) {
        let n = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock();
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.unlogged.store(0, Ordering::Relaxed);
        tracing::warn!(
            listener = self.listener,
            refused = n,
            reason = %why,
            "refusing new connections over the limit (closed at once; logged at most every 10 s)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter(total: usize, per_ip: usize) -> (Arc<ConnLimiter>, Counter) {
        let refused = Counter::default();
        let l = ConnLimiter::new(
            "test",
            ConnLimits {
                max_total: total,
                max_per_ip: per_ip,
            },
            refused.clone(),
        );
        (l, refused)
    }

    #[test]
    fn per_ip_limit_leaves_other_clients_alone() {
        let (l, refused) = limiter(10, 2);
        let a1 = l.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refused::PerIp {
                ip: ip("10.0.0.1"),
                limit: 2
            }
        );
        let _b = l.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(refused.get(), 1);
        drop(a1);
        let _a3 = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(l.open(), 3);
    }

    #[test]
    fn total_limit_and_release_on_drop() {
        let (l, refused) = limiter(3, 3);
        let held: Vec<_> = ["10.0.0.1", "10.0.0.2", "::1"]
            .iter()
            .map(|s| l.try_acquire(ip(s)).unwrap())
            .collect();
        assert_eq!(
            l.try_acquire(ip("10.0.0.9")).unwrap_err(),
            Refused::Total { limit: 3 }
        );
        assert_eq!(refused.get(), 1);
        drop(held);
        assert_eq!(l.open(), 0);
        assert!(l.counts.lock().by_ip.is_empty(), "no entries left behind");
        assert!(l.try_acquire(ip("10.0.0.9")).is_ok());
    }
}
