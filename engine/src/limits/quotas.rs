//! Client quotas enforced, as Kafka's ClientQuotaManager (KIP-13, KIP-124, KIP-219): per quota
//! type, one sampled rate per entity a quota matches (a user's client id, a user, or a client
//! id: see [`Quotas::matching`]); a request that takes the rate past the quota earns a throttle
//! time the connection then waits out (`net::throttle`).
//!
//! Rates are Kafka's `Rate` over a `SampledStat`: `quota.window.num` (11) samples of
//! `quota.window.size.seconds` (1 s), the rate being the samples' sum over the time they span,
//! padded to at least `samples - 1` windows (so a new client is not judged on its first
//! millisecond, which also lets it send up to ten seconds of its quota at once before it is
//! throttled, as on Kafka). The throttle brings the rate back to the quota if nothing more is
//! recorded: `(rate - quota) / quota * window span`; request-time throttles are capped at one
//! window as Kafka does, byte-rate ones are not (Kafka caps a fetch's size instead:
//! [`ClientLimits::fetch_max_bytes`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::security::quota::{self, Quotas};

/// Kafka's `quota.window.num` and `quota.window.size.seconds` defaults.
pub const DEFAULT_SAMPLES: usize = 11;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
/// A rate idle this long is forgotten (Kafka's inactive sensor expiry).
pub const SENSOR_EXPIRY: Duration = Duration::from_secs(3600);
/// How often the sensors are swept for expired ones, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What a quota limits. Request time is counted as Kafka's `request_percentage`: percent of
/// one thread's time, so 100 for one second of handling per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// Bytes of Produce requests per second (`producer_byte_rate`).
    Produce,
    /// Bytes of Fetch responses per second (`consumer_byte_rate`).
    Fetch,
    /// Handling time, percent of one thread (`request_percentage`).
    Request,
}

impl QuotaType {
    pub const ALL: [QuotaType; 3] = [QuotaType::Produce, QuotaType::Fetch, QuotaType::Request];

    /// The quota key that sets it.
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => quota::PRODUCER_BYTE_RATE,
            QuotaType::Fetch => quota::CONSUMER_BYTE_RATE,
            QuotaType::Request => quota::REQUEST_PERCENTAGE,
        }
    }

    /// Its name in metrics (Kafka's quota type names).
    pub fn label(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The sampling of every rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub samples: usize,
    pub window: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            samples: DEFAULT_SAMPLES,
            window: DEFAULT_WINDOW,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start: Instant,
    value: f64,
}

/// Kafka's `Rate` over a `SampledStat`: values summed into samples of one window each, the
/// oldest reused once all are taken, those older than every sample's span dropped.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn record(&mut self, cfg: &WindowConfig, value: f64, now: Instant) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start: now,
                value: 0.0,
            });
            self.current = 0;
        }
        if now.saturating_duration_since(self.samples[self.current].start) >= cfg.window {
            self.current = (self.current + 1) % cfg.samples.max(1);
            let fresh = Sample {
                start: now,
                value: 0.0,
            };
            match self.samples.get_mut(self.current) {
                Some(s) => *s = fresh,
                None => self.samples.push(fresh),
            }
        }
        self.samples[self.current].value += value;
    }

    /// Samples older than the span of all of them count no more.
    fn purge(&mut self, cfg: &WindowConfig, now: Instant) {
        let expiry = cfg.window * cfg.samples as u32;
        for s in &mut self.samples {
            if now.saturating_duration_since(s.start) >= expiry {
                *s = Sample {
                    start: now,
                    value: 0.0,
                };
            }
        }
    }

    /// The time the rate is taken over: since the oldest sample began, but at least
    /// `samples - 1` windows (Kafka's `Rate.windowSize`).
    pub fn window(&mut self, cfg: &WindowConfig, now: Instant) -> Duration {
        self.purge(cfg, now);
        let oldest = self.samples.iter().map(|s| s.start).min().unwrap_or(now);
        let mut elapsed = now.saturating_duration_since(oldest);
        let full = (elapsed.as_nanos() / cfg.window.as_nanos().max(1)) as usize;
        let min_full = cfg.samples.saturating_sub(1);
        if full < min_full {
            elapsed += cfg.window * (min_full - full) as u32;
        }
        elapsed.max(Duration::from_millis(1))
    }

    /// The rate now, per second.
    pub fn measure(&mut self, cfg: &WindowConfig, now: Instant) -> f64 {
        let window = self.window(cfg, now);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / window.as_secs_f64()
    }
}

/// Kafka's `QuotaUtils.throttleTime`: the delay X that brings an observed rate O back to the
/// quota T over the window W if nothing more comes, from O * W / (W + X) = T.
pub fn throttle_time(rate: f64, quota: f64, window: Duration) -> Duration {
    if rate <= quota {
        return Duration::ZERO;
    }
    // A zero quota allows nothing: as long a wait as a throttle may be.
    let secs = if quota > 0.0 {
        (rate - quota) / quota * window.as_secs_f64()
    } else {
        f64::MAX
    };
    // Rounded to the millisecond, as Kafka; i32::MAX ms at most (the wire's field).
    let ms = (secs * 1000.0).round().min(i32::MAX as f64);
    Duration::from_millis(ms as u64)
}

/// One rate and when it was last recorded to (for expiry).
#[derive(Debug)]
pub struct Sensor {
    state: parking_lot::Mutex<(Rate, Instant)>,
}

impl Sensor {
    fn new(now: Instant) -> Self {
        Sensor {
            state: parking_lot::Mutex::new((Rate::default(), now)),
        }
    }

    /// Records `value` and returns the throttle it earns against `quota` (the value is
    /// recorded either way, as Kafka's `Sensor.record` with its quota check).
    pub fn record(
        &self,
        cfg: &WindowConfig,
        value: f64,
        quota: f64,
        cap: Option<Duration>,
        now: Instant,
    ) -> Duration {
        let mut s = self.state.lock();
        s.1 = now;
        s.0.record(cfg, value, now);
        let rate = s.0.measure(cfg, now);
        if rate <= quota {
            return Duration::ZERO;
        }
        let window = s.0.window(cfg, now);
        let t = throttle_time(rate, quota, window);
        cap.map_or(t, |c| t.min(c))
    }

    fn idle_since(&self) -> Instant {
        self.state.lock().1
    }
}

/// Which rate a request counts to: the quota type and the entity's parts that matched
/// (Kafka's metric tags: a quota on a user alone leaves the client id out).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SensorKey {
    kind: QuotaType,
    user: Option<String>,
    client_id: Option<String>,
}

/// One quota in force for a client: its value and the rate it is checked against.
#[derive(Clone, Debug)]
struct Limit {
    quota: f64,
    sensor: Arc<Sensor>,
}

/// The quotas of one (user, client id) and their rates, as resolved from a generation of the
/// quotas: a connection keeps it while the generation, its principal and client id stay.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    pub generation: u64,
    pub user: String,
    pub client_id: String,
    limits: [Option<Limit>; 3],
}

impl ClientLimits {
    /// Whether a quota of this type applies.
    pub fn has(&self, kind: QuotaType) -> bool {
        self.limits[kind.index()].is_some()
    }

    /// The largest fetch response worth building under a consumer_byte_rate: what the quota
    /// allows over `samples - 1` windows (Kafka's `getMaxValueInQuotaWindow`), so one fetch
    /// never earns a throttle past the window.
    pub fn fetch_max_bytes(&self, cfg: &WindowConfig) -> Option<i32> {
        self.limits[QuotaType::Fetch.index()].as_ref().map(|l| {
            let span = cfg.window.as_secs_f64() * cfg.samples.saturating_sub(1) as f64;
            (l.quota * span).clamp(1.0, i32::MAX as f64) as i32
        })
    }
}

/// Labels of the quota metrics: the quota type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    pub quota: String,
}

crate::metric_set! {
    pub struct QuotaMetrics in "kafka_quota" {
        /// Seconds clients were throttled for exceeding their quotas (Kafka's throttle-time), by quota type: produce, fetch, request
        pub throttle_seconds: Family<QuotaLabels, Counter<f64, AtomicU64>> => "throttle_seconds",
        /// Responses that throttled their client, by the quota type that set the throttle
        pub throttled: Family<QuotaLabels, Counter> => "throttled_responses",
    }
}

/// Every client's rates on this broker and whether any quota is set at all.
#[derive(Debug)]
pub struct ClientQuotas {
    config: WindowConfig,
    /// Whether any quota is set: the one check a request makes when none is.
    active: AtomicBool,
    /// Bumped on every change of the quotas, after the state in force changed.
    generation: AtomicU64,
    sensors: parking_lot::Mutex<Sensors>,
    pub metrics: QuotaMetrics,
}

#[derive(Debug)]
struct Sensors {
    map: HashMap<SensorKey, Arc<Sensor>>,
    swept: Instant,
}

impl ClientQuotas {
    pub fn new(quotas: &Quotas, config: WindowConfig) -> Self {
        ClientQuotas {
            config,
            active: AtomicBool::new(!quotas.set.is_empty()),
            generation: AtomicU64::new(0),
            sensors: parking_lot::Mutex::new(Sensors {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
            metrics: QuotaMetrics::default(),
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Takes note of the quotas now in force (call after they are).
    pub fn update(&self, quotas: &Quotas) {
        self.active.store(!quotas.set.is_empty(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether any quota is set.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The generation of the quotas in force; read it before the quotas, so that a change
    /// between the two makes the next request resolve again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The quotas that apply to `user` (its principal's name) and `client_id`, with their
    /// rates, from `quotas` of generation `generation`.
    pub fn resolve(
        &self,
        quotas: &Quotas,
        generation: u64,
        user: &str,
        client_id: &str,
        now: Instant,
    ) -> ClientLimits {
        let mut sensors = self.sensors.lock();
        if now.saturating_duration_since(sensors.swept) >= SWEEP_EVERY {
            sensors.swept = now;
            // Only rates no connection holds and idle for the expiry go.
            sensors.map.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || now.saturating_duration_since(s.idle_since()) < SENSOR_EXPIRY
            });
        }
        let limits = QuotaType::ALL.map(|kind| {
            let (entity, quota) = quotas.matching(user, client_id, kind.key())?;
            let key = SensorKey {
                kind,
                user: entity.user.as_ref().map(|_| user.to_string()),
                client_id: entity.client_id.as_ref().map(|_| client_id.to_string()),
            };
            let sensor = sensors
                .map
                .entry(key)
                .or_insert_with(|| Arc::new(Sensor::new(now)))
                .clone();
            Some(Limit { quota, sensor })
        });
        ClientLimits {
            generation,
            user: user.to_string(),
            client_id: client_id.to_string(),
            limits,
        }
    }

    /// Records `value` of `kind` for a client and returns the throttle it earns (zero when no
    /// quota of that type applies).
    pub fn record(
        &self,
        client: &ClientLimits,
        kind: QuotaType,
        value: f64,
        now: Instant,
    ) -> Duration {
        let Some(limit) = &client.limits[kind.index()] else {
            return Duration::ZERO;
        };
        // Request time is capped at one window, as Kafka's ClientRequestQuotaManager.
        let cap = (kind == QuotaType::Request).then_some(self.config.window);
        limit
            .sensor
            .record(&self.config, value, limit.quota, cap, now)
    }

    /// Counts a throttle given to a client, under the quota type that set it.
    pub fn count_throttle(&self, kind: QuotaType, throttle: Duration) {
        let labels = QuotaLabels {
            quota: kind.label().to_string(),
        };
        self.metrics
            .throttle_seconds
            .get_or_create(&labels)
            .inc_by(throttle.as_secs_f64());
        self.metrics.throttled.get_or_create(&labels).inc();
    }

    #[cfg(test)]
    fn sensor_count(&self) -> usize {
        self.sensors.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::quota::{EntityName, QuotaEntity};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_new_rate_is_padded_to_ten_windows() {
        let cfg = WindowConfig::default();
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.record(&cfg, 1000.0, t0);
        // One sample 0 s old: taken over 10 s.
        assert_eq!(r.window(&cfg, t0), Duration::from_secs(10));
        assert!((r.measure(&cfg, t0) - 100.0).abs() < 1e-9);
        // 3.5 s on: 3 full windows, padded by 7 more.
        assert_eq!(r.window(&cfg, t0 + ms(3500)), ms(10_500));
        // Past ten windows, the true span.
        for s in 1..=10 {
            r.record(&cfg, 1000.0, t0 + Duration::from_secs(s));
        }
        assert_eq!(r.window(&cfg, t0 + ms(10_500)), ms(10_500));
        assert!((r.measure(&cfg, t0 + ms(10_500)) - 11_000.0 / 10.5).abs() < 1e-9);
    }

    #[test]
    fn old_samples_expire_and_are_reused() {
        let cfg = WindowConfig::default();
        let t0 = Instant::now();
        let mut r = Rate::default();
        for s in 0..11 {
            r.record(&cfg, 100.0, t0 + Duration::from_secs(s));
        }
        assert_eq!(r.samples.len(), 11);
        // The twelfth window reuses the first sample: 100 dropped, 500 added.
        r.record(&cfg, 500.0, t0 + Duration::from_secs(11));
        assert_eq!(r.samples.len(), 11);
        let now = t0 + Duration::from_secs(11);
        // Oldest sample began at 1 s: span 10 s, total 10 * 100 + 500.
        assert!((r.measure(&cfg, now) - 150.0).abs() < 1e-9);
        // Eleven windows later everything has expired.
        assert_eq!(r.measure(&cfg, now + Duration::from_secs(11)), 0.0);
    }

    #[test]
    fn throttle_brings_the_rate_back_to_the_quota() {
        // 150/s against 100/s over 10 s: wait 5 s, then 1500 over 15 s is 100/s.
        assert_eq!(
            throttle_time(150.0, 100.0, Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(
            throttle_time(100.0, 100.0, Duration::from_secs(10)),
            Duration::ZERO
        );
        assert_eq!(throttle_time(100.1, 100.0, Duration::from_secs(10)), ms(10));
        assert_eq!(
            throttle_time(1.0, 0.0, Duration::from_secs(10)),
            ms(i32::MAX as u64)
        );
    }

    #[test]
    fn a_sensor_throttles_past_its_quota_and_caps_request_time() {
        let cfg = WindowConfig::default();
        let t0 = Instant::now();
        let s = Sensor::new(t0);
        // 1000 over the padded 10 s is exactly 100/s: within the quota.
        assert_eq!(s.record(&cfg, 1000.0, 100.0, None, t0), Duration::ZERO);
        // 1500 over 10 s is 150/s: 5 s to come back to 100/s.
        assert_eq!(
            s.record(&cfg, 500.0, 100.0, None, t0),
            Duration::from_secs(5)
        );
        // Capped, as request time is.
        let capped = s.record(&cfg, 500.0, 100.0, Some(Duration::from_secs(1)), t0);
        assert_eq!(capped, Duration::from_secs(1));
    }

    /// A client that sends as fast as it is let through, waiting out each throttle, ends up
    /// at the quota over the long run.
    #[test]
    fn a_client_obeying_its_throttles_runs_at_its_quota() {
        let cfg = WindowConfig::default();
        let t0 = Instant::now();
        let s = Sensor::new(t0);
        let (quota, request) = (1_000_000.0, 16_384.0);
        let mut now = t0;
        let mut sent = 0.0;
        let end = t0 + Duration::from_secs(120);
        while now < end {
            sent += request;
            let t = s.record(&cfg, request, quota, None, now);
            now += t + ms(1);
        }
        let rate = sent / (now - t0).as_secs_f64();
        // Above the quota by the burst a new client may send (ten windows of quota) at most.
        assert!(rate >= quota * 0.95 && rate <= quota * 1.1, "{rate}");
    }

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    #[test]
    fn rates_are_kept_per_matching_entity() {
        let name = |s: &str| Some(EntityName::Name(s.into()));
        let mut q = Quotas::default();
        // alice: one rate over all her client ids; default client ids: one rate each.
        q.alter(
            &entity(name("alice"), None),
            &[(quota::PRODUCER_BYTE_RATE.into(), Some(100.0))],
        );
        q.alter(
            &entity(None, Some(EntityName::Default)),
            &[(quota::CONSUMER_BYTE_RATE.into(), Some(50.0))],
        );
        let quotas = ClientQuotas::new(&q, WindowConfig::default());
        assert!(quotas.active());
        let now = Instant::now();
        let a1 = quotas.resolve(&q, 0, "alice", "one", now);
        let a2 = quotas.resolve(&q, 0, "alice", "two", now);
        assert!(a1.has(QuotaType::Produce) && a1.has(QuotaType::Fetch));
        assert!(!a1.has(QuotaType::Request));
        // Both of alice's clients count to her one produce rate.
        assert_eq!(
            quotas.record(&a1, QuotaType::Produce, 1000.0, now),
            Duration::ZERO
        );
        assert_eq!(
            quotas.record(&a2, QuotaType::Produce, 500.0, now),
            Duration::from_secs(5)
        );
        // Each client id has a fetch rate of its own.
        assert_eq!(
            quotas.record(&a1, QuotaType::Fetch, 500.0, now),
            Duration::ZERO
        );
        assert_eq!(
            quotas.record(&a2, QuotaType::Fetch, 500.0, now),
            Duration::ZERO
        );
        assert_eq!(quotas.sensor_count(), 3);
        assert_eq!(a1.fetch_max_bytes(quotas.config()), Some(500));
        let bob = quotas.resolve(&q, 0, "bob", "one", now);
        assert!(!bob.has(QuotaType::Produce));
        assert_eq!(
            quotas.record(&bob, QuotaType::Produce, 1e12, now),
            Duration::ZERO
        );
        // Removing the quotas: no longer active.
        let none = Quotas::default();
        quotas.update(&none);
        assert!(!quotas.active());
        assert_eq!(quotas.generation(), 1);
    }

    #[test]
    fn idle_rates_nobody_holds_expire() {
        let mut q = Quotas::default();
        q.alter(
            &entity(None, Some(EntityName::Default)),
            &[(quota::PRODUCER_BYTE_RATE.into(), Some(100.0))],
        );
        let quotas = ClientQuotas::new(&q, WindowConfig::default());
        let t0 = Instant::now();
        let held = quotas.resolve(&q, 0, "u", "held", t0);
        drop(quotas.resolve(&q, 0, "u", "gone", t0));
        assert_eq!(quotas.sensor_count(), 2);
        // An hour and a sweep later, only the one a connection holds is left.
        let later = t0 + SENSOR_EXPIRY + SWEEP_EVERY;
        let _other = quotas.resolve(&q, 0, "u", "new", later);
        assert_eq!(quotas.sensor_count(), 2);
        assert!(held.has(QuotaType::Produce));
    }
}
