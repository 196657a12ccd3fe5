//! Memory budget of Fetch responses, per connection and per broker: a fetch reserves bytes
//! before reading partition data, keeps what its response actually holds, and releases it
//! once the response is written to the socket. A client that asks for a lot and never reads
//! so pins at most its connection's budget, and all of them together the broker's.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

/// Budgets are counted in KiB so that a broker-wide budget above 4 GiB still fits the
/// semaphore's `u32` acquisitions.
const UNIT: usize = 1024;

/// Bytes of Fetch responses held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchMemoryLimits {
    pub per_connection: usize,
    pub per_broker: usize,
}

impl Default for FetchMemoryLimits {
    fn default() -> Self {
        FetchMemoryLimits {
            per_connection: 64 << 20,
            per_broker: 512 << 20,
        }
    }
}

/// The broker-wide budget; each connection takes a [`ConnFetchMemory`] from it.
#[derive(Debug, Clone)]
pub struct FetchMemory {
    limits: FetchMemoryLimits,
    broker: Arc<Semaphore>,
    gauge: Gauge,
}

/// One connection's budget, drawing on the broker's too.
#[derive(Debug, Clone)]
pub struct ConnFetchMemory {
    conn: Arc<Semaphore>,
    shared: FetchMemory,
}

/// Bytes reserved for one response, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    conn: Arc<Semaphore>,
    broker: Arc<Semaphore>,
    units: usize,
    gauge: Gauge,
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT).max(1)
}

impl FetchMemory {
    pub fn new(limits: FetchMemoryLimits, gauge: Gauge) -> Self {
        let limits = FetchMemoryLimits {
            per_connection: limits.per_connection.max(UNIT),
            per_broker: limits.per_broker.max(UNIT),
        };
        FetchMemory {
            limits,
            broker: Arc::new(Semaphore::new(units(limits.per_broker))),
            gauge,
        }
    }

    pub fn limits(&self) -> FetchMemoryLimits {
        self.limits
    }

    pub fn connection(&self) -> ConnFetchMemory {
        ConnFetchMemory {
            conn: Arc::new(Semaphore::new(units(self.limits.per_connection))),
            shared: self.clone(),
        }
    }
}

impl ConnFetchMemory {
    /// Waits until `wanted` bytes (capped by both budgets, so a large request still makes
    /// progress) are free, and reserves them; the caller reads at most
    /// [`Reservation::bytes`]. Connection first, then broker: always in that order.
    pub async fn reserve(&self, wanted: usize) -> Reservation {
        let limits = self.shared.limits;
        let n = units(wanted.min(limits.per_connection).min(limits.per_broker));
        let n32 = n.min(u32::MAX as usize) as u32;
        // The semaphores are never closed, so acquiring cannot fail; forget() leaves the
        // accounting to Reservation, which can shrink.
        if let Ok(p) = self.conn.acquire_many(n32).await {
            p.forget();
        }
        if let Ok(p) = self.shared.broker.acquire_many(n32).await {
            p.forget();
        }
        self.shared.gauge.inc_by((n * UNIT) as i64);
        Reservation {
            conn: self.conn.clone(),
            broker: self.shared.broker.clone(),
            units: n32 as usize,
            gauge: self.shared.gauge.clone(),
        }
    }
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.units * UNIT
    }

    /// Gives back what a response of `used` bytes does not need.
    pub fn shrink_to(&mut self, used: usize) {
        let keep = units(used).min(self.units);
        let give = self.units - keep;
        if give > 0 {
            self.conn.add_permits(give);
            self.broker.add_permits(give);
            self.gauge.dec_by((give * UNIT) as i64);
            self.units = keep;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.conn.add_permits(self.units);
        self.broker.add_permits(self.units);
        self.gauge.dec_by((self.units * UNIT) as i64);
        self.units = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn memory(per_connection: usize, per_broker: usize) -> FetchMemory {
        FetchMemory::new(
            FetchMemoryLimits {
                per_connection,
                per_broker,
            },
            Gauge::default(),
        )
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_is_clamped_not_stuck() {
        let m = memory(64 * UNIT, 100 * UNIT);
        let c = m.connection();
        let r = c.reserve(55 << 20).await;
        assert_eq!(r.bytes(), 64 * UNIT);
    }

    #[tokio::test]
    async fn reservations_wait_for_the_connection_budget_and_shrink() {
        let m = memory(64 * UNIT, 1000 * UNIT);
        let c = m.connection();
        let mut first = c.reserve(64 * UNIT).await;
        let second = c.reserve(10 * UNIT);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), second.as_mut())
                .await
                .is_err(),
            "the connection's budget is used up"
        );
        // Another connection is not held up by this one.
        let other = m.connection().reserve(64 * UNIT).await;
        first.shrink_to(3 * UNIT);
        let second = second.await;
        assert_eq!(m.gauge.get(), ((3 + 10 + 64) * UNIT) as i64);
        drop((first, second, other));
        assert_eq!(m.gauge.get(), 0);
        assert_eq!(m.broker.available_permits(), 1000);
    }

    #[tokio::test]
    async fn the_broker_budget_bounds_all_connections() {
        let m = memory(64 * UNIT, 100 * UNIT);
        let a = m.connection().reserve(64 * UNIT).await;
        let other = m.connection();
        let b = other.reserve(64 * UNIT);
        tokio::pin!(b);
        assert!(tokio::time::timeout(Duration::from_millis(20), b.as_mut())
            .await
            .is_err());
        drop(a);
        assert_eq!(b.await.bytes(), 64 * UNIT);
    }
}
