//! AlterUserScramCredentials: upsertions (the client sends the salt, the iterations and the
//! SaltedPassword; the broker keeps StoredKey and ServerKey) and deletions, answered per user
//! as Kafka does: a user whose every alteration is valid is changed, one with an invalid one
//! is not changed at all. Needs ALTER on the cluster.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::state::{SecurityChange, SecurityState};
use crate::security::{validate, Session};

/// Why a user's alterations are refused: Kafka's code and message.
type Refusal = (i16, String);

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Every user named, in the order first named.
    let mut users: Vec<String> = Vec::new();
    for u in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        if !users.iter().any(|x| x == u.as_str()) {
            users.push(u.to_string());
        }
    }
    let result = |user: &str, r: Result<(), Refusal>| {
        let x = AlterUserScramCredentialsResult::default().with_user(sb(user));
        match r {
            Ok(()) => x,
            Err((code, msg)) => x.with_error_code(code).with_error_message(Some(sb(msg))),
        }
    };
    if !super::authorize::cluster(b, s, Operation::Alter) {
        let results = users
            .iter()
            .map(|u| {
                result(
                    u,
                    Err((
                        ResponseError::ClusterAuthorizationFailed.code(),
                        "Cluster authorization failed.".into(),
                    )),
                )
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let state = b.security.state();
    let mut changes: BTreeMap<&str, Result<Vec<SecurityChange>, Refusal>> = BTreeMap::new();
    for u in &users {
        changes.insert(u, Ok(Vec::new()));
    }
    let mut seen: HashSet<(String, i8)> = HashSet::new();
    let alterations = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism, None))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.as_str(), u.mechanism, Some(u))),
        );
    for (user, mech, upsert) in alterations {
        let Some(Ok(list)) = changes.get_mut(user) else {
            continue;
        };
        let change = if !seen.insert((user.to_string(), mech)) {
            Err((
                ResponseError::DuplicateResource.code(),
                "A user credential cannot be altered twice in the same request".to_string(),
            ))
        } else {
            match upsert {
                None => deletion(&state, user, mech),
                Some(u) => upsertion(
                    user,
                    mech,
                    i64::from(u.iterations),
                    &u.salt,
                    &u.salted_password,
                ),
            }
        };
        match change {
            Ok(c) => list.push(c),
            Err(r) => {
                changes.insert(user, Err(r));
            }
        }
    }
    let mut results = Vec::with_capacity(users.len());
    for user in &users {
        let outcome = match changes.remove(user.as_str()) {
            Some(Ok(list)) => apply(b, list).await,
            Some(Err(r)) => Err(r),
            None => Ok(()),
        };
        results.push(result(user, outcome));
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

async fn apply(b: &Broker, list: Vec<SecurityChange>) -> Result<(), Refusal> {
    for c in list {
        if let Err(e) = b.change_security(c).await {
            return Err(super::broker_error(&e));
        }
    }
    Ok(())
}

fn mechanism(code: i8) -> Result<Mechanism, Refusal> {
    Mechanism::from_code(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism.code(),
            "Unknown SCRAM mechanism".to_string(),
        )
    })
}

fn unacceptable(e: validate::Invalid) -> Refusal {
    (ResponseError::UnacceptableCredential.code(), e.0)
}

fn deletion(state: &SecurityState, user: &str, mech: i8) -> Result<SecurityChange, Refusal> {
    validate::user_name(user).map_err(unacceptable)?;
    let mechanism = mechanism(mech)?;
    if state.credential(user, mechanism).is_none() {
        return Err((
            ResponseError::ResourceNotFound.code(),
            "Attempt to delete a user credential that does not exist".to_string(),
        ));
    }
    Ok(SecurityChange::DeleteScram {
        user: user.to_string(),
        mechanism,
    })
}

fn upsertion(
    user: &str,
    mech: i8,
    iterations: i64,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<SecurityChange, Refusal> {
    validate::user_name(user).map_err(unacceptable)?;
    let mechanism = mechanism(mech)?;
    validate::iterations(mechanism, iterations).map_err(unacceptable)?;
    validate::salt(salt).map_err(unacceptable)?;
    if salted_password.len() != validate::key_len(mechanism) {
        return Err((
            ResponseError::UnacceptableCredential.code(),
            format!(
                "a {} salted password is {} bytes, not {}",
                mechanism.name(),
                validate::key_len(mechanism),
                salted_password.len()
            ),
        ));
    }
    let credential =
        ScramCredential::from_salted(mechanism, salted_password, salt, iterations as u32);
    Ok(SecurityChange::UpsertScram {
        user: user.to_string(),
        mechanism,
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alterations_are_checked_like_kafka() {
        let m = Mechanism::Sha256;
        let salted = m.salted_password(b"pw", b"salt", 4096);
        assert!(upsertion("alice", 1, 4096, b"salt", &salted).is_ok());
        let code = |r: Result<SecurityChange, Refusal>| r.unwrap_err().0;
        assert_eq!(
            code(upsertion("alice", 9, 4096, b"salt", &salted)),
            ResponseError::UnsupportedSaslMechanism.code()
        );
        assert_eq!(
            code(upsertion("alice", 1, 100, b"salt", &salted)),
            ResponseError::UnacceptableCredential.code()
        );
        assert_eq!(
            code(upsertion("alice", 1, 1 << 20, b"salt", &salted)),
            ResponseError::UnacceptableCredential.code()
        );
        assert_eq!(
            code(upsertion("", 1, 4096, b"salt", &salted)),
            ResponseError::UnacceptableCredential.code()
        );
        // A SHA-256 SaltedPassword is no SHA-512 one.
        assert_eq!(
            code(upsertion("alice", 2, 4096, b"salt", &salted)),
            ResponseError::UnacceptableCredential.code()
        );
        let state = SecurityState::default();
        assert_eq!(
            code(deletion(&state, "alice", 1)),
            ResponseError::ResourceNotFound.code()
        );
    }
}
