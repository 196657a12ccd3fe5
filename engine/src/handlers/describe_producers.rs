//! DescribeProducers (v0): the producers a partition leader knows, with their epochs, last
//! sequences and the start of any transaction they hold open (what
//! `kafka-transactions.sh find-hanging` and `icestream transaction` read).

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::partition_error;
use crate::broker::Broker;
use crate::partition::Cmd;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut readable = Decisions::new(b, s, Operation::Read, ResourceType::Topic);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !readable.allows(t.name.as_str());
        let topic = b.topics.get(t.name.as_str()).filter(|_| !denied);
        let mut partitions = Vec::with_capacity(t.partition_indexes.len());
        for idx in t.partition_indexes {
            let r = PartitionResponse::default().with_partition_index(idx);
            let Some((topic, handle)) = topic
                .as_ref()
                .and_then(|t| Some((t, t.partition(idx)?.clone())))
            else {
                partitions.push(r.with_error_code(authorize::unserved(denied)));
                continue;
            };
            if !b.leads(topic, idx) {
                partitions.push(r.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                continue;
            }
            match handle.ask(|reply| Cmd::Producers { reply }).await {
                Ok(mut views) => {
                    views.sort_by_key(|v| v.producer_id);
                    let active = views
                        .into_iter()
                        .map(|v| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(v.producer_id))
                                .with_producer_epoch(v.producer_epoch as i32)
                                .with_last_sequence(v.last_sequence)
                                .with_last_timestamp(v.last_timestamp)
                                .with_coordinator_epoch(v.coordinator_epoch)
                                .with_current_txn_start_offset(v.txn_start_offset)
                        })
                        .collect();
                    partitions.push(r.with_active_producers(active));
                }
                Err(e) => partitions.push(r.with_error_code(partition_error(&e))),
            }
        }
        topics.push(
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
