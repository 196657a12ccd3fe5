//! Kafka API handlers, one file per API. [`APIS`] is the single catalog that both ApiVersions
//! and dispatch read, so the broker never advertises an API it does not serve.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::security::Session;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod authorize;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod forward;
pub(crate) mod group_error;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub(crate) mod txn_error;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// An API and the versions served, all fully implemented.
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// The minimum advertised in ApiVersions when it differs from `min` (see Produce).
    pub advertised_min: Option<i16>,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSpec {
    ApiSpec {
        key,
        min,
        max,
        advertised_min: None,
    }
}

/// Produce and Fetch stop below the versions that address topics by id only where noted in
/// their handlers; the ranges start at the crate's (Kafka 4's) minimums.
pub const APIS: &[ApiSpec] = &[
    // librdkafka before 2.6 only compresses gzip/snappy/lz4 batches when a broker lists Produce
    // v0; Apache Kafka 4 advertises v0 for the same reason (KAFKA-18659) while refusing v0-v2
    // requests, which carry the old message formats. So do we.
    ApiSpec {
        key: ApiKey::Produce,
        min: 3,
        max: 12,
        advertised_min: Some(0),
    },
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    // What Kafka 4's admin tools call besides (issue 18).
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::ElectLeaders, 0, 2),
    // Partition reassignment (crate::cluster::reassign), v0 as in Kafka's admin tools.
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::InitProducerId, 0, 5),
    // Consumer groups, classic protocol (crate::group). librdkafka only compresses lz4
    // batches when FindCoordinator v0 is listed, so it starts at 0.
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // The KIP-848 consumer group protocol (crate::group::consumer).
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    // Transactions (crate::txn), transaction protocol v1; what coordinators send partition
    // leaders (crate::broker::txn_markers); consumer offsets in a transaction
    // (crate::group::txn_offsets).
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    // Users, ACLs and quotas (crate::security). Kafka 4 serves the ACL APIs from v1, as does
    // the protocol crate.
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    // SASL (net::sasl answers them on SASL listeners; elsewhere they are out of place).
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
];

pub fn supports(key: ApiKey, version: i16) -> bool {
    APIS.iter()
        .any(|a| a.key == key && (a.min..=a.max).contains(&version))
}

/// A handler's outcome: the response (none for acks=0 produce) and error codes for metrics.
#[derive(Default)]
pub struct Handled {
    pub response: Option<ResponseKind>,
    pub errors: Vec<i16>,
}

impl Handled {
    fn reply(r: ResponseKind) -> Self {
        Handled {
            response: Some(r),
            errors: Vec::new(),
        }
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Handled>>>;

/// Defines [`dispatch`] and [`handled`] from one list of `Api(request) => handler` arms, so
/// that what is dispatched and what is known to be handled cannot differ.
macro_rules! dispatch_table {
    ($b:ident, $s:ident, $h:ident, $v:ident; $($api:ident($r:ident) => $body:expr,)*) => {
        /// Starts the handler for a decoded request from `session`.
        #[allow(unused_variables)]
        pub fn dispatch(
            $b: Arc<Broker>,
            $s: Arc<Session>,
            $h: RequestHeader,
            req: RequestKind,
        ) -> HandlerFuture {
            let $v = $h.request_api_version;
            match req {
                $(RequestKind::$api($r) => $body,)*
                // `supports` filters everything else out before decoding.
                _ => Box::pin(async { Handled::default() }),
            }
        }

        /// Whether [`dispatch`] has a handler for an API (anything else falls to its catch-all,
        /// which answers nothing).
        pub fn handled(key: ApiKey) -> bool {
            matches!(key, $(ApiKey::$api)|*)
        }
    };
}

dispatch_table! { b, s, h, v;
    // Produce hands its batches to the partitions before returning, so that requests
    // pipelined on one connection append in order.
    Produce(r) => produce::handle(&b, &s, v, r),
    // The Kafka listener answers Fetch itself, within its connection's memory budget
    // (net::connection); elsewhere a fetch gets a budget of its own.
    Fetch(r) => Box::pin(async move {
        let memory = b.fetch_memory.connection();
        let answer = fetch::handle(&b, &s, v, r, &memory, false).await;
        Handled::reply(ResponseKind::Fetch(answer.response))
    }),
    ListOffsets(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ListOffsets(
            list_offsets::handle(&b, &s, v, r).await,
        ))
    }),
    Metadata(r) => Box::pin(async move {
        Handled::reply(ResponseKind::Metadata(metadata::handle(&b, &s, v, r).await))
    }),
    ApiVersions(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ApiVersions(api_versions::handle(&b, v, r)))
    }),
    CreateTopics(r) => Box::pin(async move {
        Handled::reply(ResponseKind::CreateTopics(
            create_topics::handle(&b, &s, v, r).await,
        ))
    }),
    DeleteTopics(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DeleteTopics(
            delete_topics::handle(&b, &s, v, r).await,
        ))
    }),
    DeleteRecords(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DeleteRecords(
            delete_records::handle(&b, &s, r).await,
        ))
    }),
    OffsetForLeaderEpoch(r) => Box::pin(async move {
        Handled::reply(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(&b, &s, r).await,
        ))
    }),
    DescribeConfigs(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeConfigs(describe_configs::handle(
            &b, &s, r,
        )))
    }),
    AlterConfigs(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AlterConfigs(
            alter_configs::handle(&b, &s, r).await,
        ))
    }),
    CreatePartitions(r) => Box::pin(async move {
        Handled::reply(ResponseKind::CreatePartitions(
            create_partitions::handle(&b, &s, r).await,
        ))
    }),
    IncrementalAlterConfigs(r) => Box::pin(async move {
        Handled::reply(ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(&b, &s, r).await,
        ))
    }),
    AlterPartitionReassignments(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(&b, &s, r).await,
        ))
    }),
    ListPartitionReassignments(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(&b, &s, r),
        ))
    }),
    DescribeCluster(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeCluster(
            describe_cluster::handle(&b, &s, r).await,
        ))
    }),
    DescribeProducers(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeProducers(
            describe_producers::handle(&b, &s, r).await,
        ))
    }),
    WriteTxnMarkers(r) => Box::pin(async move {
        Handled::reply(ResponseKind::WriteTxnMarkers(
            write_txn_markers::handle(&b, &s, r).await,
        ))
    }),
    InitProducerId(r) => Box::pin(async move {
        Handled::reply(ResponseKind::InitProducerId(
            init_producer_id::handle(&b, &s, v, r).await,
        ))
    }),
    FindCoordinator(r) => Box::pin(async move {
        Handled::reply(ResponseKind::FindCoordinator(
            find_coordinator::handle(&b, &s, v, r).await,
        ))
    }),
    JoinGroup(r) => Box::pin(async move {
        Handled::reply(ResponseKind::JoinGroup(
            join_group::handle(&b, &s, &h, v, r).await,
        ))
    }),
    SyncGroup(r) => Box::pin(async move {
        Handled::reply(ResponseKind::SyncGroup(sync_group::handle(&b, &s, v, r).await))
    }),
    Heartbeat(r) => {
        Box::pin(
            async move { Handled::reply(ResponseKind::Heartbeat(heartbeat::handle(&b, &s, r))) },
        )
    },
    LeaveGroup(r) => Box::pin(async move {
        Handled::reply(ResponseKind::LeaveGroup(leave_group::handle(&b, &s, v, r)))
    }),
    OffsetCommit(r) => Box::pin(async move {
        Handled::reply(ResponseKind::OffsetCommit(
            offset_commit::handle(&b, &s, v, r).await,
        ))
    }),
    OffsetFetch(r) => Box::pin(async move {
        let resp = forward::answer(&b, &s, &h, &r, || offset_fetch::handle(&b, &s, v, r.clone())).await;
        Handled::reply(ResponseKind::OffsetFetch(resp))
    }),
    ListGroups(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ListGroups(list_groups::handle(&b, &s, v, r)))
    }),
    DescribeGroups(r) => Box::pin(async move {
        let resp = forward::answer(&b, &s, &h, &r, || describe_groups::handle(&b, &s, v, r.clone())).await;
        Handled::reply(ResponseKind::DescribeGroups(resp))
    }),
    DeleteGroups(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DeleteGroups(
            delete_groups::handle(&b, &s, r).await,
        ))
    }),
    OffsetDelete(r) => Box::pin(async move {
        Handled::reply(ResponseKind::OffsetDelete(
            offset_delete::handle(&b, &s, r).await,
        ))
    }),
    ConsumerGroupHeartbeat(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(&b, &s, &h, v, r).await,
        ))
    }),
    ConsumerGroupDescribe(r) => Box::pin(async move {
        let resp = forward::answer(&b, &s, &h, &r, || {
            consumer_group_describe::handle(&b, &s, v, r.clone())
        })
        .await;
        Handled::reply(ResponseKind::ConsumerGroupDescribe(resp))
    }),
    DescribeTopicPartitions(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(&b, &s, r),
        ))
    }),
    DescribeLogDirs(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeLogDirs(
            describe_log_dirs::handle(&b, &s, r).await,
        ))
    }),
    ElectLeaders(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ElectLeaders(
            elect_leaders::handle(&b, &s, &h, v, r).await,
        ))
    }),
    TxnOffsetCommit(r) => Box::pin(async move {
        Handled::reply(ResponseKind::TxnOffsetCommit(
            txn_offset_commit::handle(&b, &s, v, r).await,
        ))
    }),
    AddPartitionsToTxn(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AddPartitionsToTxn(
            add_partitions_to_txn::handle(&b, &s, v, r).await,
        ))
    }),
    AddOffsetsToTxn(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AddOffsetsToTxn(
            add_offsets_to_txn::handle(&b, &s, v, r).await,
        ))
    }),
    EndTxn(r) => Box::pin(async move {
        Handled::reply(ResponseKind::EndTxn(end_txn::handle(&b, &s, v, r).await))
    }),
    DescribeTransactions(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeTransactions(
            describe_transactions::handle(&b, &s, r),
        ))
    }),
    // The connection answers these itself on SASL listeners; anywhere else (a PLAINTEXT or
    // SSL listener) Kafka answers ILLEGAL_SASL_STATE.
    SaslHandshake(r) => Box::pin(async move {
        let code = ResponseError::IllegalSaslState.code();
        Handled {
            response: Some(ResponseKind::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default().with_error_code(code),
            )),
            errors: vec![code],
        }
    }),
    SaslAuthenticate(r) => Box::pin(async move {
        let code = ResponseError::IllegalSaslState.code();
        Handled {
            response: Some(ResponseKind::SaslAuthenticate(
                kafka_protocol::messages::SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(sb("SASL is not enabled on this listener"))),
            )),
            errors: vec![code],
        }
    }),
    ListTransactions(r) => Box::pin(async move {
        Handled::reply(ResponseKind::ListTransactions(list_transactions::handle(
            &b, &s, v, r,
        )))
    }),
    CreateAcls(r) => Box::pin(async move {
        Handled::reply(ResponseKind::CreateAcls(
            create_acls::handle(&b, &s, r).await,
        ))
    }),
    DescribeAcls(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeAcls(describe_acls::handle(&b, &s, r)))
    }),
    DeleteAcls(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DeleteAcls(
            delete_acls::handle(&b, &s, r).await,
        ))
    }),
    DescribeUserScramCredentials(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeUserScramCredentials(
            describe_user_scram_credentials::handle(&b, &s, r),
        ))
    }),
    AlterUserScramCredentials(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(&b, &s, r).await,
        ))
    }),
    DescribeClientQuotas(r) => Box::pin(async move {
        Handled::reply(ResponseKind::DescribeClientQuotas(
            describe_client_quotas::handle(&b, &s, r),
        ))
    }),
    AlterClientQuotas(r) => Box::pin(async move {
        Handled::reply(ResponseKind::AlterClientQuotas(
            alter_client_quotas::handle(&b, &s, r).await,
        ))
    }),
}

/// A config request's `name=value` pairs; entries without a value are left out.
pub(crate) fn config_pairs<'a>(
    entries: impl IntoIterator<Item = (&'a StrBytes, Option<&'a StrBytes>)>,
) -> Vec<(String, String)> {
    entries
        .into_iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value?.as_str().to_string())))
        .collect()
}

pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// Config resource type for topics in DescribeConfigs / AlterConfigs.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// Config resource type for brokers.
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// The scope a broker config resource names: every broker (`""`, kafka-configs'
/// `--entity-default`) or one broker (its id).
pub(crate) fn broker_scope(name: &str) -> Result<Option<i32>, crate::broker::BrokerError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<i32>().map(Some).map_err(|_| {
        crate::config::InvalidConfig(format!(
            "broker config resource '{name}' is neither a broker id nor \"\" (every broker)"
        ))
        .into()
    })
}

/// Maps engine errors to the Kafka error code the spec names, with a message.
pub(crate) fn broker_error(e: &crate::broker::BrokerError) -> (i16, String) {
    use crate::broker::BrokerError as E;
    let c = match e {
        E::TopicExists(_) => ResponseError::TopicAlreadyExists,
        E::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        E::InvalidTopicName(_) | E::UnsafeName(_) | E::InternalTopic(_) => {
            ResponseError::InvalidTopicException
        }
        E::InvalidPartitions(_) | E::PartitionsNotIncreased { .. } | E::InternalPartitions(_) => {
            ResponseError::InvalidPartitions
        }
        E::InvalidReplicationFactor(..) => ResponseError::InvalidReplicationFactor,
        E::Controller(_) => ResponseError::RequestTimedOut,
        E::InvalidConfig(_) => ResponseError::InvalidConfig,
        E::Meta(_) | E::Storage(_) | E::Remote(_) => ResponseError::KafkaStorageError,
        E::TransactionsOpen { .. } => ResponseError::ConcurrentTransactions,
    };
    (c.code(), e.to_string())
}

pub(crate) fn partition_error(e: &crate::partition::PartitionError) -> i16 {
    use crate::log::producer_state::SequenceError;
    use crate::partition::verify::VerifyError;
    use crate::partition::PartitionError as E;
    match e {
        E::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        E::Sequence(SequenceError::Fenced { .. }) => ResponseError::InvalidProducerEpoch,
        E::Sequence(SequenceError::OutOfOrder { .. }) => ResponseError::OutOfOrderSequenceNumber,
        E::Sequence(SequenceError::StaleCoordinator { .. }) => {
            ResponseError::TransactionCoordinatorFenced
        }
        E::ControlFromClient => ResponseError::InvalidRecord,
        E::Verification(VerifyError::NotInTransaction) => ResponseError::InvalidTxnState,
        E::Verification(VerifyError::Fenced) => ResponseError::InvalidProducerEpoch,
        // Retriable for every client, as Kafka answers older ones.
        E::Verification(VerifyError::Unavailable(_)) => ResponseError::NotEnoughReplicas,
        E::Storage(_) | E::Failed(_) => ResponseError::KafkaStorageError,
        E::Stopped | E::NotLeader => ResponseError::NotLeaderOrFollower,
        E::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        E::Sealed => ResponseError::UnknownTopicOrPartition,
    }
    .code()
}
