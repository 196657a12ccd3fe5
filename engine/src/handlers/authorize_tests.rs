//! Each API family's checks through the handlers of a single broker with authorization on:
//! `User:admin` is a superuser, `User:alice` holds the ACLs each test gives her.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as E;

use crate::handlers::{self, sb, topic_name};
use crate::internal_topic::TopicHost;
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::security::state::SecurityChange;
use crate::security::{AuthzConfig, Principal, Session};
use crate::Broker;

async fn broker(enabled: bool) -> Arc<Broker> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut config = crate::BrokerConfig::for_tests(dir);
    config.authz = AuthzConfig {
        enabled,
        super_users: vec![Principal::user("admin")],
    };
    let b = Broker::start(config, crate::IoBackend::Blocking, None, None)
        .await
        .unwrap();
    for t in ["orders", "payments", "team-a.clicks", "team-b.clicks"] {
        TopicHost::create_topic(&*b, t, 1, -1, &[]).await.unwrap();
    }
    b
}

fn user(name: &str) -> Session {
    Session::new(
        Principal::user(name),
        "127.0.0.1".parse().unwrap(),
        Arc::from("PLAINTEXT"),
    )
}

async fn allow(
    b: &Broker,
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    who: &str,
    op: Operation,
) {
    b.change_security(SecurityChange::CreateAcls(vec![AclBinding {
        resource_type: rt,
        name: name.into(),
        pattern,
        principal: who.into(),
        host: "*".into(),
        operation: op,
        permission: Permission::Allow,
    }]))
    .await
    .unwrap();
}

async fn allow_alice(b: &Broker, rt: ResourceType, name: &str, op: Operation) {
    allow(b, rt, name, PatternType::Literal, "User:alice", op).await;
}

fn records() -> Bytes {
    use crate::log::batch::{encode_batch, Compression, NewRecord};
    let r = NewRecord {
        key: None,
        value: Some(Bytes::from_static(b"v")),
        timestamp: crate::time::now_ms(),
        headers: Vec::new(),
    };
    encode_batch(&[r], Compression::None).unwrap()
}

/// Produce's per-partition codes, topic by topic.
async fn produce(b: &Arc<Broker>, s: &Session, topics: &[&str]) -> Vec<(String, i16)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(
            topics
                .iter()
                .map(|t| {
                    TopicProduceData::default()
                        .with_name(topic_name(t))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records()))])
                })
                .collect(),
        );
    let handled = handlers::produce::handle(b, s, 9, req).await;
    let Some(ResponseKind::Produce(r)) = handled.response else {
        panic!("no produce response");
    };
    r.responses
        .into_iter()
        .map(|t| (t.name.to_string(), t.partition_responses[0].error_code))
        .collect()
}

async fn fetch(b: &Arc<Broker>, s: &Session, topic: &str) -> i16 {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let memory = b.fetch_memory.connection();
    let r = handlers::fetch::handle(b, s, 12, req, &memory, false).await;
    r.response.responses[0].partitions[0].error_code
}

async fn metadata(b: &Broker, s: &Session, topics: Option<&[&str]>) -> MetadataResponse {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(true)
        .with_include_topic_authorized_operations(true);
    handlers::metadata::handle(b, s, 12, req).await
}

fn bits(ops: &[Operation]) -> i32 {
    ops.iter().fold(0, |b, o| b | (1 << o.code()))
}

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;

#[tokio::test]
async fn topics_need_their_acls() {
    let b = broker(true).await;
    let alice = user("alice");
    let t = ResourceType::Topic;
    assert_eq!(E::TopicAuthorizationFailed.code(), TOPIC_DENIED);

    // Nothing allowed yet: every topic API is denied, and the admin may do everything.
    assert_eq!(produce(&b, &alice, &["orders"]).await[0].1, TOPIC_DENIED);
    assert_eq!(produce(&b, &user("admin"), &["orders"]).await[0].1, 0);
    assert_eq!(fetch(&b, &alice, "orders").await, TOPIC_DENIED);
    // A topic that does not exist is denied too: existence is not disclosed.
    assert_eq!(fetch(&b, &alice, "nope").await, TOPIC_DENIED);
    let all = metadata(&b, &alice, None).await;
    assert!(all.topics.is_empty());

    // Read on one topic: consume it, describe it, not produce to it nor touch another.
    allow_alice(&b, t, "orders", Operation::Read).await;
    assert_eq!(fetch(&b, &alice, "orders").await, 0);
    assert_eq!(fetch(&b, &alice, "payments").await, TOPIC_DENIED);
    let codes = produce(&b, &alice, &["orders", "payments"]).await;
    assert_eq!(
        codes,
        [
            ("orders".into(), TOPIC_DENIED),
            ("payments".into(), TOPIC_DENIED)
        ]
    );
    let all = metadata(&b, &alice, None).await;
    let names: Vec<_> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(names, ["orders"]);
    // Read implies Describe: the bits are READ and DESCRIBE.
    assert_eq!(
        all.topics[0].topic_authorized_operations,
        bits(&[Operation::Read, Operation::Describe])
    );
    let named = metadata(&b, &alice, Some(&["orders", "payments", "nope"])).await;
    let codes: Vec<_> = named.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, TOPIC_DENIED, TOPIC_DENIED]);
    assert!(named.topics[1].topic_id.is_nil());

    let lo = handlers::list_offsets::handle(
        &b,
        &alice,
        7,
        ListOffsetsRequest::default().with_topics(
            ["orders", "payments"]
                .iter()
                .map(|t| {
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default(
                        )
                        .with_partition_index(0)
                        .with_timestamp(-1)])
                })
                .collect(),
        ),
    )
    .await;
    let codes: Vec<_> = lo
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, [0, TOPIC_DENIED]);

    // A prefixed ACL covers a family of topics.
    allow(
        &b,
        t,
        "team-a.",
        PatternType::Prefixed,
        "User:alice",
        Operation::Write,
    )
    .await;
    let codes = produce(&b, &alice, &["team-a.clicks", "team-b.clicks"]).await;
    assert_eq!(codes[0].1, 0);
    assert_eq!(codes[1].1, TOPIC_DENIED);

    // Admin APIs on topics.
    let create = |name: &str| {
        CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(1)
                .with_replication_factor(-1),
        ])
    };
    let r = handlers::create_topics::handle(&b, &alice, 7, create("team-a.views")).await;
    assert_eq!(r.topics[0].error_code, TOPIC_DENIED);
    allow_alice(&b, t, "team-a.views", Operation::Create).await;
    let r = handlers::create_topics::handle(&b, &alice, 7, create("team-a.views")).await;
    assert_eq!(r.topics[0].error_code, 0);
    // Without DESCRIBE_CONFIGS the created topic's configs are not shown.
    assert_eq!(r.topics[0].topic_config_error_code, TOPIC_DENIED);

    let del = |name: &str| DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)]);
    let r = handlers::delete_topics::handle(&b, &alice, 5, del("orders")).await;
    assert_eq!(r.responses[0].error_code, TOPIC_DENIED);

    let parts = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(topic_name("orders"))
            .with_count(2),
    ]);
    let r = handlers::create_partitions::handle(&b, &alice, parts).await;
    assert_eq!(r.results[0].error_code, TOPIC_DENIED);

    let describe = |rt: i8, name: &str| {
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(sb(name)),
        ])
    };
    let r = handlers::describe_configs::handle(&b, &alice, describe(2, "orders"));
    assert_eq!(r.results[0].error_code, TOPIC_DENIED);
    let r = handlers::describe_configs::handle(&b, &alice, describe(4, "0"));
    assert_eq!(r.results[0].error_code, CLUSTER_DENIED);
    allow_alice(&b, t, "orders", Operation::AlterConfigs).await;
    // AlterConfigs implies DescribeConfigs.
    let r = handlers::describe_configs::handle(&b, &alice, describe(2, "orders"));
    assert_eq!(r.results[0].error_code, 0);

    let r = handlers::describe_log_dirs::handle(&b, &alice, Default::default()).await;
    assert_eq!((r.error_code, r.results.len()), (CLUSTER_DENIED, 0));
    let r = handlers::describe_log_dirs::handle(&b, &user("admin"), Default::default()).await;
    assert_eq!((r.error_code, r.results.len()), (0, 1));

    // DescribeCluster answers everyone; the operations only who may describe the cluster.
    let dc = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let r = handlers::describe_cluster::handle(&b, &alice, dc.clone()).await;
    assert_eq!((r.error_code, r.cluster_authorized_operations), (0, 0));
    allow_alice(
        &b,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::Describe,
    )
    .await;
    let r = handlers::describe_cluster::handle(&b, &alice, dc).await;
    assert_eq!(
        r.cluster_authorized_operations,
        bits(&[Operation::Describe])
    );
}

#[tokio::test]
async fn groups_need_their_acls() {
    let b = broker(true).await;
    let alice = user("alice");
    let g = ResourceType::Group;

    let find = |key: &str, key_type: i8| {
        FindCoordinatorRequest::default()
            .with_key(sb(key))
            .with_key_type(key_type)
    };
    let r = handlers::find_coordinator::handle(&b, &alice, 3, find("etl", 0)).await;
    assert_eq!(r.error_code, GROUP_DENIED);
    let r = handlers::find_coordinator::handle(&b, &alice, 3, find("tx", 1)).await;
    assert_eq!(r.error_code, TXN_DENIED);

    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(sb("etl")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(sb("range"))
        .with_metadata(Bytes::new())]);
    let h = RequestHeader::default();
    let r = handlers::join_group::handle(&b, &alice, &h, 9, join.clone()).await;
    assert_eq!(r.error_code, GROUP_DENIED);
    let r = handlers::heartbeat::handle(
        &b,
        &alice,
        HeartbeatRequest::default().with_group_id(GroupId(sb("etl"))),
    );
    assert_eq!(r.error_code, GROUP_DENIED);

    // READ on the group lets her commit offsets for the topics she may read, only.
    allow_alice(&b, g, "etl", Operation::Read).await;
    allow_alice(&b, ResourceType::Topic, "orders", Operation::Read).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb("etl")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(
            ["orders", "payments"]
                .iter()
                .map(|t| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(0),
                        ])
                })
                .collect(),
        );
    let r = handlers::offset_commit::handle(&b, &alice, 8, commit.clone()).await;
    let mut codes: Vec<_> = r
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("orders".into(), 0), ("payments".into(), TOPIC_DENIED)]
    );
    // The admin commits both; alice's fetch of every offset leaves `payments` out.
    let r = handlers::offset_commit::handle(&b, &user("admin"), 8, commit).await;
    assert!(r.topics.iter().all(|t| t.partitions[0].error_code == 0));
    let fetch_all = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb("etl")))
        .with_topics(None);
    let r = handlers::offset_fetch::handle(&b, &alice, 7, fetch_all.clone());
    assert_eq!(r.error_code, 0);
    let names: Vec<_> = r.topics.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["orders"]);
    let r = handlers::offset_fetch::handle(&b, &user("bob"), 7, fetch_all);
    assert_eq!(r.error_code, GROUP_DENIED);

    // Describe and list: only groups she may describe (READ implies DESCRIBE).
    let r = handlers::list_groups::handle(&b, &user("bob"), 4, Default::default());
    assert!(r.groups.is_empty());
    let r = handlers::list_groups::handle(&b, &alice, 4, Default::default());
    assert_eq!(r.groups.len(), 1);
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(sb("etl")), GroupId(sb("other"))])
        .with_include_authorized_operations(true);
    let r = handlers::describe_groups::handle(&b, &alice, 5, describe);
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(
        r.groups[0].authorized_operations,
        bits(&[Operation::Read, Operation::Describe])
    );
    assert_eq!(r.groups[1].error_code, GROUP_DENIED);

    // Deleting needs DELETE.
    let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb("etl"))]);
    let r = handlers::delete_groups::handle(&b, &alice, del.clone()).await;
    assert_eq!(r.results[0].error_code, GROUP_DENIED);
    let od = OffsetDeleteRequest::default().with_group_id(GroupId(sb("etl")));
    let r = handlers::offset_delete::handle(&b, &alice, od).await;
    assert_eq!(r.error_code, GROUP_DENIED);
    allow_alice(&b, g, "etl", Operation::Delete).await;
    let r = handlers::delete_groups::handle(&b, &alice, del).await;
    assert_eq!(r.results[0].error_code, 0);
}

#[tokio::test]
async fn transactions_need_their_acls() {
    let b = broker(true).await;
    let alice = user("alice");
    let init = |txn: Option<&str>| {
        InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(sb(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    // Idempotent: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let r = handlers::init_producer_id::handle(&b, &alice, 4, init(None)).await;
    assert_eq!(r.error_code, CLUSTER_DENIED);
    allow(
        &b,
        ResourceType::Topic,
        "team-a.",
        PatternType::Prefixed,
        "User:alice",
        Operation::Write,
    )
    .await;
    let r = handlers::init_producer_id::handle(&b, &alice, 4, init(None)).await;
    assert_eq!(r.error_code, 0);

    // Transactional: WRITE on the transactional id, for every transaction API.
    let r = handlers::init_producer_id::handle(&b, &alice, 4, init(Some("tx"))).await;
    assert_eq!(r.error_code, TXN_DENIED);
    let r = handlers::end_txn::handle(
        &b,
        &alice,
        3,
        EndTxnRequest::default().with_transactional_id(TransactionalId(sb("tx"))),
    )
    .await;
    assert_eq!(r.error_code, TXN_DENIED);
    let add = |topic: &str| {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(sb("tx")))
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![0]),
            ])
    };
    let code = |r: &AddPartitionsToTxnResponse| {
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    let r = handlers::add_partitions_to_txn::handle(&b, &alice, 3, add("team-a.clicks")).await;
    assert_eq!(code(&r), TXN_DENIED);
    // Produce with the transactional id fails as a whole.
    let txn_produce = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(sb("tx"))))
        .with_acks(-1)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name("team-a.clicks"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records())),
            ])]);
    let handled = handlers::produce::handle(&b, &alice, 9, txn_produce).await;
    let Some(ResponseKind::Produce(r)) = handled.response else {
        panic!("no produce response");
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, TXN_DENIED);

    allow_alice(&b, ResourceType::TransactionalId, "tx", Operation::Write).await;
    let r = handlers::init_producer_id::handle(&b, &alice, 4, init(Some("tx"))).await;
    assert_eq!(r.error_code, 0);
    // A topic she may not write fails the request: TOPIC_AUTHORIZATION_FAILED.
    let r = handlers::add_partitions_to_txn::handle(&b, &alice, 3, add("orders")).await;
    assert_eq!(code(&r), TOPIC_DENIED);
    let offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(sb("tx")))
        .with_group_id(GroupId(sb("etl")));
    let r = handlers::add_offsets_to_txn::handle(&b, &alice, 3, offsets).await;
    assert_eq!(r.error_code, GROUP_DENIED);

    // Listing shows only the transactional ids she may describe.
    let r = handlers::list_transactions::handle(&b, &alice, 1, Default::default());
    assert_eq!(r.transaction_states.len(), 1);
    let r = handlers::list_transactions::handle(&b, &user("bob"), 1, Default::default());
    assert!(r.transaction_states.is_empty());
    let r = handlers::describe_transactions::handle(
        &b,
        &user("bob"),
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(sb("tx"))]),
    );
    assert_eq!(r.transaction_states[0].error_code, TXN_DENIED);

    // Markers are brokers' only.
    let markers = WriteTxnMarkersRequest::default().with_markers(vec![
        write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(1))
            .with_topics(vec![
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partition_indexes(vec![0]),
            ]),
    ]);
    let r = handlers::write_txn_markers::handle(&b, &alice, markers).await;
    assert_eq!(
        r.markers[0].topics[0].partitions[0].error_code,
        CLUSTER_DENIED
    );
}

/// With authorization off nothing is checked: an anonymous client does everything.
#[tokio::test]
async fn everything_is_allowed_when_off() {
    let b = broker(false).await;
    let anonymous = user("ANONYMOUS");
    assert_eq!(produce(&b, &anonymous, &["orders"]).await[0].1, 0);
    assert_eq!(fetch(&b, &anonymous, "orders").await, 0);
    let all = metadata(&b, &anonymous, None).await;
    assert_eq!(all.topics.len(), 4);
    let r = handlers::describe_log_dirs::handle(&b, &anonymous, Default::default()).await;
    assert_eq!(r.error_code, 0);
}
