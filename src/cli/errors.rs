//! Turning Kafka error codes into one-line messages that say what to do.

use kafka_protocol::ResponseError;

/// The Kafka spec name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("error code {c}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// What an operator can do about a Kafka error code, when we know.
pub fn hint(code: i16) -> &'static str {
    match code {
        1 => "the offset is outside the log; use -o start or -o end",
        2 | 87 => "the broker rejected the records as corrupt; check the broker log",
        3 | 100 => "list topics with 'icestream topic list'",
        5 | 6 | 15 | 14 => "leadership is moving; retry in a few seconds",
        7 => "the broker did not finish in time; check 'icestream cluster health' and retry",
        10 | 18 => "the records are too large; raise the topic's max.message.bytes",
        17 => "topic names may use only letters, digits, '.', '_' and '-' (at most 249)",
        19 | 20 => "not enough replicas are in sync; check 'icestream cluster info' and retry",
        21 => "use --acks all, 1 or 0",
        29..=31 => "the broker refused the operation for this client; check its ACLs",
        35 => "the broker does not support this request version; upgrade the broker or the CLI",
        36 => "choose another name, or delete it with 'icestream topic delete'",
        37 => "use a positive partition count larger than the current one",
        38 => "use a replication factor between 1 and the number of brokers",
        39 => "check the replica assignment",
        40 => "check the key and value with the broker's topic config documentation",
        41 => "retry; the controller moved",
        42 => "the broker rejected the request; check the broker log",
        44 => "the broker's topic policy rejected the request; check the broker config",
        56 => "the broker has a storage problem; check the broker log and disk",
        73 => "topic deletion is disabled on the broker",
        76 => "use a compression type the broker supports, or --compression none",
        89 => "the broker is throttling admin requests; retry later",
        -1 => "the broker hit an unexpected error; check the broker log",
        _ => "check the broker log",
    }
}

/// `NAME` or `NAME: broker message` for the parenthesis of an error line.
pub fn code_detail(code: i16, message: Option<&str>) -> String {
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("{}: {}", code_name(code), one_line(m)),
        None => code_name(code),
    }
}

/// Keeps a message from the network on one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error line for a failed operation on one topic.
pub fn topic_error(action: &str, topic: &str, code: i16, message: Option<&str>) -> anyhow::Error {
    let detail = code_detail(code, message);
    match code {
        3 | 100 => anyhow::anyhow!(
            "topic '{topic}' does not exist ({detail}): list topics with 'icestream topic list'"
        ),
        36 => anyhow::anyhow!(
            "topic '{topic}' already exists ({detail}): choose another name, or delete it with 'icestream topic delete {topic}'"
        ),
        _ => anyhow::anyhow!("cannot {action} topic '{topic}' ({detail}): {}", hint(code)),
    }
}

/// [`topic_error`]'s line as an `Err` when a broker's answer about `topic` carries an error.
pub fn check_topic(
    action: &str,
    topic: &str,
    code: i16,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(topic_error(
        action,
        topic,
        code,
        message.map(|m| m.as_str()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kafka_spec() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(code_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(code_name(31000), "error code 31000");
    }

    #[test]
    fn topic_errors_are_one_line_with_a_hint() {
        let e = topic_error("describe", "x", 3, None).to_string();
        assert_eq!(
            e,
            "topic 'x' does not exist (UNKNOWN_TOPIC_OR_PARTITION): list topics with 'icestream topic list'"
        );
        let e = topic_error("create", "y", 38, Some("bad\nfactor")).to_string();
        assert!(!e.contains('\n'));
        assert!(e.contains("INVALID_REPLICATION_FACTOR: bad factor"));
    }
}
