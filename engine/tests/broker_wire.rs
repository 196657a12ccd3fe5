//! The broker started in-process on loopback and spoken to over TCP with `kafka-protocol`
//! requests: what a Kafka client observes of long polls and incremental fetch sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use engine::log::batch::{encode_batch, Compression, NewRecord};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    async fn open(b: &engine::Broker) -> Conn {
        Conn {
            stream: TcpStream::connect(b.kafka_addr).await.unwrap(),
            next_id: 1,
        }
    }

    async fn send<Req, Resp>(&mut self, api: ApiKey, version: i16, req: &Req) -> Resp
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.next_id)
            .encode(&mut buf, Req::header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        let n = self.stream.read_i32().await.unwrap() as usize;
        let mut body = vec![0; n];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.next_id);
        self.next_id += 1;
        Resp::decode(&mut body, version).unwrap()
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn start() -> Arc<engine::Broker> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut config = engine::BrokerConfig::for_tests(dir);
    config.smp = 2;
    engine::net::start_broker(config, engine::IoBackend::Auto, None, None)
        .await
        .unwrap()
}

async fn create(c: &mut Conn, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs)]);
    let resp: CreateTopicsResponse = c.send(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .map(|v| NewRecord {
            value: Some(Bytes::from(v.to_string())),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        })
        .collect();
    encode_batch(&records, Compression::None).unwrap()
}

async fn produce(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    acks: i16,
    values: &[&str],
) -> Option<ProduceResponse> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(values)))])]);
    if acks == 0 {
        // No response comes for acks=0; send the frame by hand.
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(9)
            .with_correlation_id(999)
            .encode(&mut buf, ProduceRequest::header_version(9))
            .unwrap();
        req.encode(&mut buf, 9).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        c.stream.write_all(&buf).await.unwrap();
        return None;
    }
    Some(c.send(ApiKey::Produce, 9, &req).await)
}

fn fetch_req(topic: &str, parts: &[(i32, i64)], wait_ms: i32, session: (i32, i32)) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(if parts.is_empty() {
            vec![]
        } else {
            vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|&(p, off)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(off)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]
        })
}

fn record_count(records: &Option<Bytes>) -> usize {
    let Some(b) = records else { return 0 };
    let mut b = b.clone();
    let mut n = 0;
    while b.remaining() >= 61 {
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize + 12;
        n += i32::from_be_bytes(b[57..61].try_into().unwrap()) as usize;
        b.advance(len);
    }
    n
}

#[tokio::test(flavor = "current_thread")]
async fn long_poll_wakes_on_produce_not_on_timeout() {
    let b = start().await;
    let mut c = Conn::open(&b).await;
    create(&mut c, "poll", 1, &[]).await;
    let broker = b.clone();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = Conn::open(&broker).await;
        produce(&mut p, "poll", 0, -1, &["late"]).await;
    });
    let t = Instant::now();
    let resp: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("poll", &[(0, 0)], 10_000, (0, -1)),
        )
        .await;
    let waited = t.elapsed();
    producer.await.unwrap();
    assert_eq!(record_count(&resp.responses[0].partitions[0].records), 1);
    assert!(
        waited < Duration::from_secs(5),
        "fetch waited {waited:?} instead of waking on the produce"
    );
    // And with nothing to wake it, the wait lasts max_wait_ms.
    let t = Instant::now();
    let resp: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("poll", &[(0, 1)], 300, (0, -1)),
        )
        .await;
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(record_count(&resp.responses[0].partitions[0].records), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn incremental_fetch_sessions_send_only_changes() {
    let b = start().await;
    let mut c = Conn::open(&b).await;
    create(&mut c, "sess", 3, &[]).await;
    for p in 0..3 {
        produce(&mut c, "sess", p, -1, &["a", "b"]).await;
    }
    // Full fetch that opens a session (epoch 0).
    let full: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("sess", &[(0, 0), (1, 0), (2, 0)], 0, (0, 0)),
        )
        .await;
    let id = full.session_id;
    assert!(id > 0);
    assert_eq!(full.responses[0].partitions.len(), 3);
    // Incremental: the client moves partition 0 forward only; nothing changed anywhere.
    let inc: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("sess", &[(0, 2), (1, 2), (2, 2)], 0, (id, 1)),
        )
        .await;
    assert_eq!(inc.error_code, 0);
    assert!(
        inc.responses.iter().all(|t| t.partitions.is_empty()),
        "{inc:?}"
    );
    // New data on partition 1 only: the next incremental fetch names no partitions, yet gets it.
    produce(&mut c, "sess", 1, -1, &["c"]).await;
    let inc: FetchResponse = c
        .send(ApiKey::Fetch, 12, &fetch_req("sess", &[], 1000, (id, 2)))
        .await;
    let parts: Vec<_> = inc
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .collect();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].partition_index, 1);
    assert_eq!(record_count(&parts[0].records), 1);
    // Forgetting a partition and a stale epoch.
    let forget = fetch_req("sess", &[], 0, (id, 3)).with_forgotten_topics_data(vec![
        ForgottenTopic::default()
            .with_topic(name("sess"))
            .with_partitions(vec![1]),
    ]);
    let _: FetchResponse = c.send(ApiKey::Fetch, 12, &forget).await;
    let stale: FetchResponse = c
        .send(ApiKey::Fetch, 12, &fetch_req("sess", &[], 0, (id, 3)))
        .await;
    assert_eq!(
        stale.error_code,
        kafka_protocol::ResponseError::InvalidFetchSessionEpoch.code()
    );
    let unknown: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("sess", &[], 0, (id + 1000, 1)),
        )
        .await;
    assert_eq!(
        unknown.error_code,
        kafka_protocol::ResponseError::FetchSessionIdNotFound.code()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn acks_zero_and_write_caching_still_store_records() {
    let b = start().await;
    let mut c = Conn::open(&b).await;
    create(
        &mut c,
        "cached",
        1,
        &[("write.caching", "true"), ("flush.ms", "50")],
    )
    .await;
    create(&mut c, "fire", 1, &[]).await;
    let r = produce(&mut c, "cached", 0, -1, &["x", "y"]).await.unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(produce(&mut c, "fire", 0, 0, &["f1", "f2", "f3"])
        .await
        .is_none());
    // The next request on the same connection is answered: acks=0 sent nothing back.
    let resp: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("fire", &[(0, 0)], 2000, (0, -1)),
        )
        .await;
    assert_eq!(record_count(&resp.responses[0].partitions[0].records), 3);
    let resp: FetchResponse = c
        .send(
            ApiKey::Fetch,
            12,
            &fetch_req("cached", &[(0, 0)], 0, (0, -1)),
        )
        .await;
    assert_eq!(record_count(&resp.responses[0].partitions[0].records), 2);
    b.shutdown().await;
}
