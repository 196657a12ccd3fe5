//! ApiVersions: the catalog in [`super::APIS`], and the feature levels this broker supports
//! and the cluster finalized (v3+, as Kafka's describeFeatures reads them).

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

fn catalog() -> Vec<ApiVersion> {
    super::APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.advertised_min.unwrap_or(a.min))
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle(
    b: &crate::broker::Broker,
    _version: i16,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    use crate::cluster::features;
    let supported = features::supported()
        .into_iter()
        .map(|(name, max)| {
            SupportedFeatureKey::default()
                .with_min_version(features::min_level(&name))
                .with_name(super::sb(name))
                .with_max_version(max)
        })
        .collect();
    // A single node finalizes what it supports, at epoch 0 (Java clients only read finalized
    // features of an epoch above -1: `transaction.version` 2 switches them to protocol v2).
    let (epoch, finalized) = b
        .cluster
        .as_ref()
        .map_or((0, features::finalized_alone()), |c| {
            c.finalized_features_epoch()
        });
    let finalized = finalized
        .into_iter()
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(super::sb(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_api_keys(catalog())
        .with_supported_features(supported)
        .with_finalized_features_epoch(epoch)
        .with_finalized_features(finalized)
}

/// The answer to an ApiVersions request of a version we do not know (sent as v0).
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(catalog())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    /// A single node finalizes `transaction.version` 2 (its supported range starting at 0, as
    /// Kafka's), so that Java clients 4.x use transaction protocol v2.
    #[tokio::test]
    async fn a_single_node_finalizes_transaction_version_2() {
        let dir = tempfile::tempdir().unwrap().keep();
        let b = crate::Broker::start(
            crate::BrokerConfig::for_tests(dir),
            crate::IoBackend::Blocking,
            None,
            None,
        )
        .await
        .unwrap();
        let r = super::handle(&b, 3, Default::default());
        let tv = |name: &str| name == crate::cluster::features::TRANSACTION_VERSION;
        let s = r
            .supported_features
            .iter()
            .find(|f| tv(f.name.as_str()))
            .unwrap();
        assert_eq!((s.min_version, s.max_version), (0, 2));
        let f = r
            .finalized_features
            .iter()
            .find(|f| tv(f.name.as_str()))
            .unwrap();
        assert_eq!((f.min_version_level, f.max_version_level), (2, 2));
        assert!(r.finalized_features_epoch >= 0);
        assert_eq!(b.transaction_version(), 2);
    }

    /// Every API that ApiVersions advertises reaches a handler, not the dispatcher's catch-all.
    #[test]
    fn every_advertised_api_has_a_handler() {
        let advertised = super::catalog();
        assert!(!advertised.is_empty());
        let unhandled: Vec<i16> = advertised
            .iter()
            .map(|a| a.api_key)
            .filter(|&k| !ApiKey::try_from(k).is_ok_and(super::super::handled))
            .collect();
        assert!(
            unhandled.is_empty(),
            "advertised without a handler: {unhandled:?}"
        );
    }
}
