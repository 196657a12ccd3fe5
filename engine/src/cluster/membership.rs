//! Membership: which brokers exist and how to reach them, learned by gossip over the RPC
//! listener. Every broker says hello to its seeds and to every member it knows, twice a second;
//! each hello carries the sender and the members it knows, and the answer carries the
//! receiver's list, so a broker that knows one live seed soon knows everyone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

/// How a broker is reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub node_id: i32,
    /// `host:port` of its RPC listener.
    pub rpc_addr: String,
    /// Where Kafka clients reach it.
    pub kafka_host: String,
    pub kafka_port: u16,
    /// Its `broker.rack` (`--rack`), if any. Absent from older brokers' hellos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Base URL of its schema registry (`http://host:port`), where other brokers' registries
    /// forward writes while it leads `_schemas`. Absent from brokers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_url: Option<String>,
    /// Base URL of its Iceberg catalog listener (`http://host:port`), where other brokers'
    /// translators hand rounds over while it commits a topic's table (it leads the topic's
    /// partition 0). Absent from brokers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iceberg_catalog_url: Option<String>,
    /// Random, new at every process start: tells a restarted broker from another process
    /// claiming a live broker's id (0 from brokers that predate it).
    #[serde(default)]
    pub incarnation: u64,
    /// The feature levels it supports (none from brokers that predate them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub features: super::features::Levels,
    /// Its RPC protocol version ([`super::rpc::VERSION`]; 1 from brokers that predate it).
    #[serde(default = "first_rpc_version")]
    pub rpc_version: u16,
    /// Its release (the binary's version), absent from brokers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Where clients of each of its Kafka listeners reach it, by listener name (Kafka's
    /// advertised.listeners). Absent from brokers that predate it: `kafka_host:kafka_port`
    /// (its first listener) is then its only address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, (String, u16)>,
}

impl Member {
    /// Where a client of listener `name` reaches this broker; `None` when it has no such
    /// listener (Kafka then leaves it out of what that client is told).
    pub fn kafka_address(&self, name: &str) -> Option<(String, u16)> {
        if self.listeners.is_empty() {
            return Some((self.kafka_host.clone(), self.kafka_port));
        }
        self.listeners.get(name).cloned()
    }
}

fn first_rpc_version() -> u16 {
    1
}

/// Why a hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "node {node} is live at {live} (incarnation {live_incarnation:x}); another process \
         claims it from {claimed} (incarnation {claimed_incarnation:x}): refused until the live \
         one stops answering"
    )]
    Impostor {
        node: i32,
        live: String,
        live_incarnation: u64,
        claimed: String,
        claimed_incarnation: u64,
    },
}

/// A partition leader's view of its in-sync replicas, spread by gossip so that every broker's
/// Metadata reports the leader's ISR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrView {
    pub topic: String,
    pub partition: i32,
    /// The leader's Raft term (leader epoch) when it computed this.
    pub epoch: i32,
    pub isr: Vec<i32>,
}

/// The body of `Hello` and `Members` frames.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub from: Member,
    pub members: Vec<Member>,
    /// The ISR of every partition the sender leads (absent from older brokers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isr: Vec<IsrView>,
}

/// A member counts as alive if heard from within this long.
pub const ALIVE_FOR: Duration = Duration::from_secs(3);

pub struct Members {
    me: Member,
    known: RwLock<BTreeMap<i32, (Member, Option<Instant>)>>,
    /// When this process started: a member it has not heard from yet is not known to be gone
    /// until it has been up for a session ([`Self::listable`]).
    started: Instant,
}

impl Members {
    pub fn new(me: Member) -> Self {
        let mut known = BTreeMap::new();
        known.insert(me.node_id, (me.clone(), None));
        Members {
            me,
            known: RwLock::new(known),
            started: Instant::now(),
        }
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Every member known, by node id (this broker included).
    pub fn all(&self) -> Vec<Member> {
        self.known.read().values().map(|(m, _)| m.clone()).collect()
    }

    pub fn get(&self, id: i32) -> Option<Member> {
        self.known.read().get(&id).map(|(m, _)| m.clone())
    }

    /// This broker, and every member heard from directly within [`ALIVE_FOR`].
    pub fn is_alive(&self, id: i32) -> bool {
        self.heard_within(id, ALIVE_FOR)
    }

    /// Whether clients are told about member `id` (Metadata, DescribeCluster): heard from
    /// within `d`, or known from a peer's list and not heard from yet while this broker has
    /// been up for less than `d`. As a Kafka broker lists every registered broker its
    /// controller has not fenced, a broker that just restarted does not leave out a live one
    /// it has not heard from yet (clients drop the brokers a Metadata answer leaves out).
    pub fn listable(&self, id: i32, d: Duration) -> bool {
        if id == self.me.node_id {
            return true;
        }
        match self.known.read().get(&id) {
            Some((_, Some(seen))) => seen.elapsed() < d,
            Some((_, None)) => self.started.elapsed() < d,
            None => false,
        }
    }

    /// How many other members were heard from directly since this process started, and how
    /// long ago it started.
    pub fn heard_since_start(&self) -> (usize, Duration) {
        let heard = self
            .known
            .read()
            .iter()
            .filter(|(id, (_, seen))| **id != self.me.node_id && seen.is_some())
            .count();
        (heard, self.started.elapsed())
    }

    /// This broker, and every member heard from directly within `d`.
    pub fn heard_within(&self, id: i32, d: Duration) -> bool {
        if id == self.me.node_id {
            return true;
        }
        self.known
            .read()
            .get(&id)
            .and_then(|(_, seen)| *seen)
            .is_some_and(|t| t.elapsed() < d)
    }

    /// Records what a hello (or its answer) said and marks the sender as just heard from.
    ///
    /// The sender's entry is authoritative for its addresses, but not against a live member:
    /// a hello with the id of a member heard within [`ALIVE_FOR`], another incarnation and
    /// other addresses is refused (nothing of it is recorded). That stops a second process
    /// started with a live broker's `--node-id` by mistake, and forgeries that do not know
    /// the incarnation; it is no authentication (the incarnation travels in clear text in
    /// every hello). A restarted broker (new incarnation) is accepted at once on the same
    /// addresses, and on new ones once its old process is no longer live.
    pub fn merge(&self, from: &Member, others: &[Member]) -> Result<(), MergeError> {
        let mut known = self.known.write();
        Self::check_in(&known, &self.me, from)?;
        self.record(&mut known, from, others);
        Ok(())
    }

    /// Whether a hello from `from` would be refused as another process claiming a live
    /// member (see [`Self::merge`]), recording nothing.
    pub fn check(&self, from: &Member) -> Result<(), MergeError> {
        Self::check_in(&self.known.read(), &self.me, from)
    }

    fn check_in(
        known: &BTreeMap<i32, (Member, Option<Instant>)>,
        me: &Member,
        from: &Member,
    ) -> Result<(), MergeError> {
        if let Some((live, seen)) = known.get(&from.node_id) {
            let is_me = from.node_id == me.node_id;
            let alive = is_me || seen.is_some_and(|t| t.elapsed() < ALIVE_FOR);
            let moved = live.rpc_addr != from.rpc_addr
                || live.kafka_host != from.kafka_host
                || live.kafka_port != from.kafka_port;
            if alive && live.incarnation != from.incarnation && (moved || is_me) {
                return Err(MergeError::Impostor {
                    node: from.node_id,
                    live: live.rpc_addr.clone(),
                    live_incarnation: live.incarnation,
                    claimed: from.rpc_addr.clone(),
                    claimed_incarnation: from.incarnation,
                });
            }
        }
        Ok(())
    }

    fn record(
        &self,
        known: &mut BTreeMap<i32, (Member, Option<Instant>)>,
        from: &Member,
        others: &[Member],
    ) {
        for m in others.iter().chain(std::iter::once(from)) {
            if m.node_id == self.me.node_id {
                continue;
            }
            let seen = known.get(&m.node_id).and_then(|(_, s)| *s);
            let seen = if m.node_id == from.node_id {
                Some(Instant::now())
            } else {
                seen
            };
            // The sender's own entry is authoritative for its addresses.
            if m.node_id == from.node_id || !known.contains_key(&m.node_id) {
                known.insert(m.node_id, (m.clone(), seen));
            } else if let Some(e) = known.get_mut(&m.node_id) {
                e.1 = seen;
            }
        }
    }

    /// Announces this broker's schema registry URL from the next hello on.
    pub fn set_schema_registry_url(&self, url: String) {
        if let Some((m, _)) = self.known.write().get_mut(&self.me.node_id) {
            m.schema_registry_url = Some(url);
        }
    }

    /// Announces this broker's Kafka listeners' advertised addresses from the next hello on.
    pub fn set_kafka_listeners(&self, listeners: BTreeMap<String, (String, u16)>) {
        if let Some((m, _)) = self.known.write().get_mut(&self.me.node_id) {
            m.listeners = listeners;
        }
    }

    /// Announces this broker's Iceberg catalog URL from the next hello on.
    pub fn set_iceberg_catalog_url(&self, url: String) {
        if let Some((m, _)) = self.known.write().get_mut(&self.me.node_id) {
            m.iceberg_catalog_url = Some(url);
        }
    }

    pub fn hello(&self, cluster_id: &str) -> Hello {
        Hello {
            cluster_id: cluster_id.to_string(),
            // This broker's own entry, with what was set after start (the registry and
            // catalog URLs).
            from: self.get(self.me.node_id).unwrap_or_else(|| self.me.clone()),
            members: self.all(),
            isr: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i32) -> Member {
        Member {
            node_id: id,
            rpc_addr: format!("127.0.0.1:{}", 9000 + id),
            kafka_host: "127.0.0.1".into(),
            kafka_port: 9100 + id as u16,
            rack: None,
            schema_registry_url: None,
            iceberg_catalog_url: None,
            incarnation: id as u64,
            features: Default::default(),
            rpc_version: crate::cluster::rpc::VERSION,
            release: None,
            listeners: Default::default(),
        }
    }

    #[test]
    fn merge_learns_transitively_and_marks_only_the_sender_alive() {
        let ms = Members::new(m(1));
        ms.merge(&m(2), &[m(2), m(3), m(1)]).unwrap();
        assert_eq!(ms.all().len(), 3);
        assert!(ms.is_alive(1) && ms.is_alive(2) && !ms.is_alive(3));
        let mut moved = m(3);
        moved.kafka_port = 1;
        ms.merge(&m(2), &[moved.clone()]).unwrap();
        assert_eq!(
            ms.get(3).unwrap().kafka_port,
            9103,
            "only the member itself moves its address"
        );
        ms.merge(&moved, &[]).unwrap();
        assert_eq!(ms.get(3).unwrap().kafka_port, 1);
        assert!(ms.is_alive(3));
    }

    #[test]
    fn rack_and_isr_are_optional_on_the_wire() {
        // A hello from a broker that predates racks and ISR gossip still decodes.
        let old = r#"{"cluster_id":"c","from":{"node_id":2,"rpc_addr":"h:1","kafka_host":"h","kafka_port":2},"members":[]}"#;
        let h: Hello = serde_json::from_str(old).unwrap();
        assert_eq!((h.from.rack, h.isr.len()), (None, 0));
        let mut racked = m(1);
        racked.rack = Some("eu-1a".into());
        let ms = Members::new(m(3));
        let mut hello = Members::new(racked.clone()).hello("c");
        hello.isr.push(IsrView {
            topic: "t".into(),
            partition: 0,
            epoch: 4,
            isr: vec![1, 3],
        });
        let back: Hello = serde_json::from_slice(&serde_json::to_vec(&hello).unwrap()).unwrap();
        ms.merge(&back.from, &back.members).unwrap();
        assert_eq!(ms.get(1).unwrap().rack.as_deref(), Some("eu-1a"));
        assert_eq!(back.isr, hello.isr);
    }

    #[test]
    fn the_registry_url_travels_in_hellos_from_its_broker_only() {
        let ms = Members::new(m(1));
        ms.set_schema_registry_url("http://127.0.0.1:8081".into());
        let h = ms.hello("c");
        assert_eq!(
            h.from.schema_registry_url.as_deref(),
            Some("http://127.0.0.1:8081")
        );
        let other = Members::new(m(2));
        other.merge(&h.from, &h.members).unwrap();
        assert_eq!(
            other.get(1).unwrap().schema_registry_url.as_deref(),
            Some("http://127.0.0.1:8081")
        );
        // A hello without the field (an older broker) still decodes.
        let old = r#"{"node_id":3,"rpc_addr":"a:1","kafka_host":"h","kafka_port":1}"#;
        let m3: Member = serde_json::from_str(old).unwrap();
        assert_eq!(m3.schema_registry_url, None);
    }

    #[test]
    fn the_iceberg_catalog_url_travels_in_hellos_and_is_optional() {
        let ms = Members::new(m(1));
        ms.set_iceberg_catalog_url("http://127.0.0.1:8181".into());
        let h: Hello =
            serde_json::from_slice(&serde_json::to_vec(&ms.hello("c")).unwrap()).unwrap();
        let other = Members::new(m(2));
        other.merge(&h.from, &h.members).unwrap();
        assert_eq!(
            other.get(1).unwrap().iceberg_catalog_url.as_deref(),
            Some("http://127.0.0.1:8181")
        );
        let old = r#"{"node_id":3,"rpc_addr":"a:1","kafka_host":"h","kafka_port":1}"#;
        let m3: Member = serde_json::from_str(old).unwrap();
        assert_eq!(m3.iceberg_catalog_url, None);
    }

    #[test]
    fn a_live_member_is_not_replaced_by_another_incarnation_elsewhere() {
        let ms = Members::new(m(1));
        ms.merge(&m(2), &[]).unwrap();
        let mut impostor = m(2);
        impostor.incarnation = 77;
        impostor.rpc_addr = "10.0.0.9:1".into();
        assert!(matches!(
            ms.merge(&impostor, &[]),
            Err(MergeError::Impostor { node: 2, .. })
        ));
        assert_eq!(ms.get(2).unwrap(), m(2), "nothing of it is recorded");
        // Nor can anyone claim to be this broker.
        let mut me = m(1);
        me.incarnation = 5;
        assert!(ms.merge(&me, &[]).is_err());
        // A restart on the same addresses is accepted at once.
        let mut restarted = m(2);
        restarted.incarnation = 78;
        ms.merge(&restarted, &[]).unwrap();
        assert_eq!(ms.get(2).unwrap().incarnation, 78);
        // A restart elsewhere once the old process is no longer live.
        ms.known.write().get_mut(&2).unwrap().1 = Some(Instant::now() - ALIVE_FOR);
        ms.merge(&impostor, &[]).unwrap();
        assert_eq!(ms.get(2).unwrap().rpc_addr, "10.0.0.9:1");
    }

    /// A hello of a release before versions and features were announced still decodes, as
    /// RPC version 1 with no features (which holds every feature back).
    #[test]
    fn a_previous_release_hello_decodes_as_version_one() {
        let old = r#"{"node_id":2,"rpc_addr":"127.0.0.1:9002","kafka_host":"h","kafka_port":9102,"incarnation":5}"#;
        let m: Member = serde_json::from_str(old).unwrap();
        assert_eq!((m.rpc_version, m.release.as_deref()), (1, None));
        assert!(m.features.is_empty());
        let back: Member =
            serde_json::from_str(&serde_json::to_string(&self::m(3)).unwrap()).unwrap();
        assert_eq!(back.rpc_version, crate::cluster::rpc::VERSION);
    }

    #[test]
    fn listeners_travel_in_hellos_and_older_members_keep_their_one_address() {
        let ms = Members::new(m(1));
        ms.set_kafka_listeners(
            [
                ("PLAINTEXT".to_string(), ("10.0.0.1".to_string(), 9092)),
                ("SSL".to_string(), ("broker-1.example".to_string(), 9093)),
            ]
            .into(),
        );
        let h = ms.hello("c");
        let back: Hello = serde_json::from_slice(&serde_json::to_vec(&h).unwrap()).unwrap();
        let other = Members::new(m(2));
        other.merge(&back.from, &back.members).unwrap();
        let one = other.get(1).unwrap();
        assert_eq!(
            one.kafka_address("SSL"),
            Some(("broker-1.example".into(), 9093))
        );
        assert_eq!(one.kafka_address("SASL_SSL"), None);
        // A member without listeners (an older broker) answers every listener with its one
        // address.
        let old = r#"{"node_id":3,"rpc_addr":"a:1","kafka_host":"h","kafka_port":1}"#;
        let m3: Member = serde_json::from_str(old).unwrap();
        assert_eq!(m3.kafka_address("SSL"), Some(("h".into(), 1)));
    }
}
