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
                .with_name(super::sb(name))
                .with_min_version(1)
                .with_max_version(max)
        })
        .collect();
    let (epoch, finalized) = b
        .cluster
        .as_ref()
        .map_or((-1, Default::default()), |c| c.finalized_features_epoch());
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
