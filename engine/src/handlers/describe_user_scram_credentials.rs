//! DescribeUserScramCredentials: each user's mechanisms and iterations (never a salt or key).
//! Needs DESCRIBE on the cluster. No users asked for: every user.

use std::collections::HashSet;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::scram::ScramCredential;
use crate::security::Session;

pub fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !super::authorize::cluster(b, s, Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let state = b.security.state();
    let infos = |creds: &std::collections::BTreeMap<_, ScramCredential>| {
        creds
            .iter()
            .map(
                |(m, c): (&crate::security::scram::Mechanism, &ScramCredential)| {
                    CredentialInfo::default()
                        .with_mechanism(m.code())
                        .with_iterations(c.iterations as i32)
                },
            )
            .collect::<Vec<_>>()
    };
    let asked: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if asked.is_empty() {
        state
            .users
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(sb(user.as_str()))
                    .with_credential_infos(infos(creds))
            })
            .collect()
    } else {
        let mut seen = HashSet::new();
        let duplicates: HashSet<&String> = asked.iter().filter(|u| !seen.insert(*u)).collect();
        let mut answered = HashSet::new();
        asked
            .iter()
            .filter(|u| answered.insert(*u))
            .map(|user| {
                let r = DescribeUserScramCredentialsResult::default().with_user(sb(user.as_str()));
                if duplicates.contains(user) {
                    return r
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(sb(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        )));
                }
                match state.users.get(user) {
                    Some(creds) => r.with_credential_infos(infos(creds)),
                    None => r
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(Some(sb(format!(
                            "Attempt to describe a user credential that does not exist: {user}"
                        )))),
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
