//! `icestream serve` flags for the Kafka listeners and TLS: `--listeners`,
//! `--advertised-listeners`, `--listener-security-protocol-map` (Kafka's) and the `--tls-*`
//! files and policy; their checks and conversion into the engine's `KafkaListener`s and
//! `TlsSettings`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use engine::config::{KafkaListener, SecurityProtocol};
use engine::security::tls::{ClientAuth, TlsSettings};

#[derive(Args, Debug, Clone, Default)]
pub struct ListenerArgs {
    /// Kafka listeners, NAME://HOST:PORT comma-separated (Kafka's listeners); NAME is a
    /// security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) or a name given one by
    /// --listener-security-protocol-map; an empty HOST binds every address [default: one
    /// PLAINTEXT listener on --kafka-addr]
    #[arg(long, env = "ICESTREAM_LISTENERS")]
    pub listeners: Option<String>,
    /// What clients of each listener are told to connect to, NAME://HOST:PORT comma-separated
    /// (Kafka's advertised.listeners) [default: each listener's address; the first's is
    /// --advertised-kafka-addr when given]
    #[arg(long, env = "ICESTREAM_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Security protocols of custom listener names, NAME:PROTOCOL comma-separated (Kafka's
    /// listener.security.protocol.map), e.g. INTERNAL:SASL_SSL,EXTERNAL:SSL
    #[arg(long, env = "ICESTREAM_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// The server certificate chain (PEM) of the SSL and SASL_SSL listeners (and of the HTTP
    /// listeners with --http-tls); reloaded when the file changes
    #[arg(long, env = "ICESTREAM_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM); reloaded when the file changes
    #[arg(long, env = "ICESTREAM_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted for client certificates (with --tls-client-auth) and, with
    /// --http-tls and --seeds, for the other brokers' certificates
    #[arg(long, env = "ICESTREAM_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificates on TLS listeners: none, requested or required (Kafka's
    /// ssl.client.auth); a client certificate's principal is User:<its subject DN, RFC 2253>
    #[arg(long, env = "ICESTREAM_TLS_CLIENT_AUTH", default_value = "none")]
    pub tls_client_auth: String,
    /// Serve the admin API, schema registry and Iceberg catalog over TLS (https) with the
    /// --tls-cert-file certificate, asking for client certificates as --tls-client-auth says
    #[arg(long, env = "ICESTREAM_HTTP_TLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub http_tls: bool,
    /// Mutual TLS between brokers on the RPC listener: each broker presents its
    /// --tls-cert-file certificate (it needs the serverAuth and clientAuth usages and a SAN
    /// naming the host of its RPC address) and requires the other's to chain to --tls-ca-file
    #[arg(long, env = "ICESTREAM_RPC_TLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rpc_tls: bool,
}

/// Splits `NAME://HOST:PORT` into its name, host and port (IPv6 hosts in brackets).
fn split_listener(s: &str, flag: &str) -> anyhow::Result<(String, String, u16)> {
    let (name, rest) = s
        .split_once("://")
        .with_context(|| format!("--{flag}: '{s}' must be NAME://HOST:PORT"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("--{flag}: '{s}': the listener name must be letters, digits, _ or -");
    }
    let (host, port) = rest
        .rsplit_once(':')
        .with_context(|| format!("--{flag}: '{s}' must be NAME://HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--{flag}: '{s}': bad port '{port}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

/// Parses `host:port` as `--advertised-kafka-addr` takes it.
pub(crate) fn host_port(s: &str, flag: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("--{flag} '{s}' must be host:port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--{flag} '{s}': bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

fn items(list: &Option<String>) -> impl Iterator<Item = &str> {
    list.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl ListenerArgs {
    /// The Kafka listeners, given `--kafka-addr` and `--advertised-kafka-addr` (the shorthand
    /// for one PLAINTEXT listener, and the first listener's advertised address).
    pub fn kafka_listeners(
        &self,
        kafka_addr: SocketAddr,
        advertised_kafka_addr: Option<&str>,
    ) -> anyhow::Result<Vec<KafkaListener>> {
        let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
        for item in items(&self.listener_security_protocol_map) {
            let (name, proto) = item.split_once(':').with_context(|| {
                format!("--listener-security-protocol-map: '{item}' must be NAME:PROTOCOL")
            })?;
            let protocol = SecurityProtocol::parse(proto).with_context(|| {
                format!(
                    "--listener-security-protocol-map: '{proto}' is not a security protocol \
                     (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
                )
            })?;
            map.push((name.trim().to_ascii_uppercase(), protocol));
        }
        let protocol_of = |name: &str| -> anyhow::Result<SecurityProtocol> {
            map.iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .or_else(|| SecurityProtocol::parse(name))
                .with_context(|| {
                    format!(
                        "listener {name} has no security protocol: name it PLAINTEXT, SSL, \
                         SASL_PLAINTEXT or SASL_SSL, or map it with \
                         --listener-security-protocol-map {name}:PROTOCOL"
                    )
                })
        };
        let mut out: Vec<KafkaListener> = Vec::new();
        if self
            .listeners
            .as_deref()
            .is_none_or(|l| l.trim().is_empty())
        {
            out.push(KafkaListener {
                name: Arc::from(SecurityProtocol::Plaintext.name()),
                protocol: SecurityProtocol::Plaintext,
                addr: kafka_addr,
                advertised: (kafka_addr.ip().to_string(), kafka_addr.port()),
            });
        } else {
            for item in items(&self.listeners) {
                let (name, host, port) = split_listener(item, "listeners")?;
                let protocol = protocol_of(&name)?;
                let bind_host = if host.is_empty() {
                    "0.0.0.0"
                } else {
                    host.as_str()
                };
                let addr = (bind_host, port)
                    .to_socket_addrs()
                    .with_context(|| format!("--listeners: cannot resolve '{host}' in '{item}'"))?
                    .next()
                    .with_context(|| format!("--listeners: '{host}' has no address"))?;
                if out.iter().any(|l| *l.name == *name) {
                    bail!("--listeners: listener {name} is given twice");
                }
                if port != 0 && out.iter().any(|l| l.addr.port() == port) {
                    bail!("--listeners: port {port} is used by two listeners");
                }
                out.push(KafkaListener {
                    name: Arc::from(name.as_str()),
                    protocol,
                    addr,
                    advertised: (addr.ip().to_string(), port),
                });
            }
        }
        if let Some(a) = advertised_kafka_addr {
            out[0].advertised = host_port(a, "advertised-kafka-addr")?;
        }
        for item in items(&self.advertised_listeners) {
            let (name, host, port) = split_listener(item, "advertised-listeners")?;
            let Some(l) = out.iter_mut().find(|l| *l.name == *name) else {
                bail!("--advertised-listeners: {name} is not one of --listeners");
            };
            if host.is_empty()
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified())
            {
                bail!("--advertised-listeners: '{item}' must name a host clients can reach");
            }
            l.advertised = (host, port);
        }
        Ok(out)
    }

    /// The TLS settings, required when a listener is SSL or SASL_SSL or with --http-tls.
    pub fn tls_settings(
        &self,
        listeners: &[KafkaListener],
        clustered: bool,
    ) -> anyhow::Result<Option<TlsSettings>> {
        let client_auth = ClientAuth::parse(&self.tls_client_auth).with_context(|| {
            format!(
                "--tls-client-auth must be none, requested or required, got '{}'",
                self.tls_client_auth
            )
        })?;
        let needed = listeners.iter().find(|l| l.protocol.is_tls());
        let (cert_file, key_file) = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (None, None) => {
                if let Some(l) = needed {
                    bail!(
                        "listener {} is {}: give --tls-cert-file and --tls-key-file",
                        l.name,
                        l.protocol
                    );
                }
                if self.http_tls {
                    bail!("--http-tls needs --tls-cert-file and --tls-key-file");
                }
                if self.rpc_tls {
                    bail!("--rpc-tls needs --tls-cert-file, --tls-key-file and --tls-ca-file");
                }
                if client_auth != ClientAuth::None || self.tls_ca_file.is_some() {
                    bail!("--tls-client-auth and --tls-ca-file need --tls-cert-file and --tls-key-file");
                }
                return Ok(None);
            }
            _ => bail!("--tls-cert-file and --tls-key-file go together"),
        };
        if self.http_tls && clustered && self.tls_ca_file.is_none() {
            bail!("--http-tls with --seeds needs --tls-ca-file: brokers call each other's schema registry and Iceberg catalog over https and verify each other's certificate against those CAs");
        }
        if self.rpc_tls && self.tls_ca_file.is_none() {
            bail!("--rpc-tls needs --tls-ca-file (the CA other brokers' certificates are checked against)");
        }
        if client_auth != ClientAuth::None && self.tls_ca_file.is_none() {
            bail!("--tls-client-auth {} needs --tls-ca-file (the CAs client certificates are checked against)", self.tls_client_auth);
        }
        Ok(Some(TlsSettings {
            cert_file,
            key_file,
            ca_file: self.tls_ca_file.clone(),
            client_auth,
        }))
    }
}

/// Warns about each listener that binds beyond loopback and lets anyone in: a Kafka listener
/// that is PLAINTEXT, or SSL without required client certificates; an HTTP listener without
/// authentication.
pub fn warn_unauthenticated(
    listeners: &[KafkaListener],
    tls: Option<&TlsSettings>,
    http: &[(&str, SocketAddr)],
    http_auth: bool,
) {
    for l in unauthenticated(listeners, tls) {
        tracing::warn!(
            listener = %l.name,
            addr = %l.addr,
            protocol = %l.protocol,
            "Kafka listener reachable beyond loopback without authentication: anyone who can \
             reach it may read, write and delete data (use SASL_SSL or SASL_PLAINTEXT, or SSL \
             with --tls-client-auth required)"
        );
    }
    for (name, addr) in http {
        if !http_auth && !addr.ip().is_loopback() {
            tracing::warn!(
                listener = name,
                %addr,
                "HTTP listener reachable beyond loopback without authentication"
            );
        }
    }
}

/// The Kafka listeners beyond loopback that authenticate no one.
fn unauthenticated<'a>(
    listeners: &'a [KafkaListener],
    tls: Option<&TlsSettings>,
) -> impl Iterator<Item = &'a KafkaListener> {
    let certs_required = tls.is_some_and(|t| t.client_auth == ClientAuth::Required);
    listeners.iter().filter(move |l| {
        !l.addr.ip().is_loopback()
            && match l.protocol {
                SecurityProtocol::Plaintext => true,
                SecurityProtocol::Ssl => !certs_required,
                SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listeners: Option<&str>, advertised: Option<&str>, map: Option<&str>) -> ListenerArgs {
        ListenerArgs {
            listeners: listeners.map(str::to_string),
            advertised_listeners: advertised.map(str::to_string),
            listener_security_protocol_map: map.map(str::to_string),
            tls_client_auth: "none".into(),
            ..Default::default()
        }
    }

    fn kafka() -> SocketAddr {
        "127.0.0.1:9092".parse().unwrap()
    }

    #[test]
    fn default_is_one_plaintext_listener_on_kafka_addr() {
        let l = args(None, None, None)
            .kafka_listeners(kafka(), None)
            .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(&*l[0].name, "PLAINTEXT");
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[0].addr, kafka());
        assert_eq!(l[0].advertised, ("127.0.0.1".into(), 9092));
        let l = args(None, None, None)
            .kafka_listeners(kafka(), Some("kafka.example.com:19092"))
            .unwrap();
        assert_eq!(l[0].advertised, ("kafka.example.com".into(), 19092));
    }

    #[test]
    fn listeners_with_custom_names_and_advertised_addresses() {
        let l = args(
            Some("PLAINTEXT://127.0.0.1:9092, INTERNAL://:9093,ssl://[::1]:9094"),
            Some("INTERNAL://broker-1.internal:19093"),
            Some("internal:sasl_ssl"),
        )
        .kafka_listeners(kafka(), None)
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(&*l[1].name, "INTERNAL");
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].addr, "0.0.0.0:9093".parse().unwrap());
        assert_eq!(l[1].advertised, ("broker-1.internal".into(), 19093));
        assert_eq!(&*l[2].name, "SSL");
        assert_eq!(l[2].protocol, SecurityProtocol::Ssl);
        assert_eq!(l[2].addr, "[::1]:9094".parse().unwrap());
        assert_eq!(l[2].advertised, ("::1".into(), 9094));
        assert_eq!(l[0].advertised, ("127.0.0.1".into(), 9092));
    }

    #[test]
    fn bad_listener_flags_are_refused() {
        let err = |a: ListenerArgs| a.kafka_listeners(kafka(), None).unwrap_err().to_string();
        assert!(
            err(args(Some("EXTERNAL://:9092"), None, None)).contains("has no security protocol")
        );
        assert!(err(args(
            Some("PLAINTEXT://:9092,PLAINTEXT://:9093"),
            None,
            None
        ))
        .contains("twice"));
        assert!(err(args(Some("PLAINTEXT://:9092,SSL://:9092"), None, None)).contains("port 9092"));
        assert!(err(args(Some("127.0.0.1:9092"), None, None)).contains("NAME://HOST:PORT"));
        assert!(err(args(Some("SSL://:x"), None, None)).contains("bad port"));
        assert!(err(args(Some("SSL://:9092"), Some("OTHER://h:1"), None)).contains("not one of"));
        assert!(err(args(Some("SSL://:9092"), Some("SSL://0.0.0.0:1"), None)).contains("reach"));
        assert!(
            err(args(Some("X://:9092"), None, Some("X:TLS"))).contains("not a security protocol")
        );
    }

    #[test]
    fn tls_settings_are_required_by_tls_listeners() {
        let a = args(Some("SSL://:9093"), None, None);
        let l = a.kafka_listeners(kafka(), None).unwrap();
        assert!(a
            .tls_settings(&l, false)
            .unwrap_err()
            .to_string()
            .contains("--tls-cert-file"));
        let mut a = a;
        a.tls_cert_file = Some("c.pem".into());
        a.tls_key_file = Some("k.pem".into());
        a.tls_client_auth = "required".into();
        assert!(a
            .tls_settings(&l, false)
            .unwrap_err()
            .to_string()
            .contains("--tls-ca-file"));
        a.tls_ca_file = Some("ca.pem".into());
        let t = a.tls_settings(&l, false).unwrap().unwrap();
        assert_eq!(t.client_auth, ClientAuth::Required);
        a.tls_client_auth = "sometimes".into();
        assert!(a.tls_settings(&l, false).is_err());
        let plain = args(None, None, None);
        let l = plain.kafka_listeners(kafka(), None).unwrap();
        assert_eq!(plain.tls_settings(&l, false).unwrap(), None);
        let mut https = plain.clone();
        https.http_tls = true;
        assert!(https.tls_settings(&l, false).is_err());
        https.tls_cert_file = Some("c.pem".into());
        https.tls_key_file = Some("k.pem".into());
        assert!(https.tls_settings(&l, false).unwrap().is_some());
        // In a cluster the brokers verify each other: a CA file is needed.
        assert!(https
            .tls_settings(&l, true)
            .unwrap_err()
            .to_string()
            .contains("--tls-ca-file"));
        https.tls_ca_file = Some("ca.pem".into());
        assert!(https.tls_settings(&l, true).unwrap().is_some());
    }

    #[test]
    fn rpc_tls_needs_the_certificate_and_the_ca() {
        let mut a = args(None, None, None);
        let l = a.kafka_listeners(kafka(), None).unwrap();
        a.rpc_tls = true;
        let err = |a: &ListenerArgs| a.tls_settings(&l, true).unwrap_err().to_string();
        assert!(
            err(&a).contains("--rpc-tls needs --tls-cert-file"),
            "{}",
            err(&a)
        );
        a.tls_cert_file = Some("c.pem".into());
        a.tls_key_file = Some("k.pem".into());
        assert!(
            err(&a).contains("--rpc-tls needs --tls-ca-file"),
            "{}",
            err(&a)
        );
        a.tls_ca_file = Some("ca.pem".into());
        let t = a.tls_settings(&l, true).unwrap().unwrap();
        assert_eq!(t.ca_file, Some("ca.pem".into()));
    }

    #[test]
    fn listeners_beyond_loopback_without_authentication_are_found() {
        let a = args(
            Some("PLAINTEXT://127.0.0.1:1,OPEN://0.0.0.0:2,SSL://0.0.0.0:3,SASL_SSL://0.0.0.0:4"),
            None,
            Some("OPEN:PLAINTEXT"),
        );
        let l = a.kafka_listeners(kafka(), None).unwrap();
        let names = |tls: Option<&TlsSettings>| {
            unauthenticated(&l, tls)
                .map(|l| l.name.to_string())
                .collect::<Vec<_>>()
        };
        let mut t = TlsSettings {
            cert_file: "c".into(),
            key_file: "k".into(),
            ca_file: Some("ca".into()),
            client_auth: ClientAuth::Requested,
        };
        assert_eq!(names(Some(&t)), ["OPEN", "SSL"]);
        t.client_auth = ClientAuth::Required;
        assert_eq!(names(Some(&t)), ["OPEN"]);
    }
}
