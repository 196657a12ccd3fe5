"""Test PKI and client settings for the security e2e tests (TLS, mTLS, SASL).

`make_pki(dir)` writes a test CA, a server certificate (SANs 127.0.0.1, ::1, localhost) and a
client certificate (subject O=acme, CN=alice) made with the `cryptography` package; the
`*_ssl` helpers turn them into confluent-kafka, kafka-python and kcat settings, and
`tls_args` into the broker's flags. Other helpers may add functions at the end of this file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Broker


def _name(**attrs) -> x509.Name:
    """A subject in DER order (the most general first): O then CN, as `openssl req` makes."""
    order = [("C", NameOID.COUNTRY_NAME), ("O", NameOID.ORGANIZATION_NAME),
             ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME), ("CN", NameOID.COMMON_NAME)]
    return x509.Name([x509.NameAttribute(oid, attrs[k]) for k, oid in order if k in attrs])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Pki:
    dir: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def server_cert(self) -> str:
        return str(self.dir / "server.pem")

    @property
    def server_key(self) -> str:
        return str(self.dir / "server.key")

    @property
    def client_cert(self) -> str:
        return str(self.dir / "client.pem")

    @property
    def client_key(self) -> str:
        return str(self.dir / "client.key")

    def issue(self, cert_path: Path | str, key_path: Path | str, *, server: bool,
              serial: int | None = None, days: int = 30, **subject) -> x509.Certificate:
        """Signs a new key's certificate with the CA and writes both (PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(_name(**subject))
             .issuer_name(self.ca_cert.subject)
             .public_key(key.public_key())
             .serial_number(serial or x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        # Written to new files then renamed over the old ones: a reader never sees half a file.
        for path, write in ((Path(key_path), lambda p: _write_key(key, p)),
                            (Path(cert_path), lambda p: _write_cert(cert, p))):
            tmp = path.with_name(path.name + ".tmp")
            write(tmp)
            os.replace(tmp, path)
        return cert


def make_pki(dir: Path, ca_cn: str = "Icestream Test CA") -> Pki:
    """A CA (ca.pem), a server certificate (server.pem/.key, CN=localhost) and a client
    certificate (client.pem/.key, subject O=acme, CN=alice) under `dir`."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(O="Icestream Tests", CN=ca_cn)
    ca = (x509.CertificateBuilder()
          .subject_name(name).issuer_name(name)
          .public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    _write_cert(ca, dir / "ca.pem")
    _write_key(key, dir / "ca.key")
    pki = Pki(dir, key, ca)
    pki.issue(pki.server_cert, pki.server_key, server=True, CN="localhost")
    pki.issue(pki.client_cert, pki.client_key, server=False, O="acme", CN="alice")
    return pki


def tls_args(pki: Pki, client_auth: str | None = None) -> list[str]:
    """The broker flags for TLS with the PKI's server certificate (and client CA)."""
    args = ["--tls-cert-file", pki.server_cert, "--tls-key-file", pki.server_key]
    if client_auth:
        args += ["--tls-ca-file", pki.ca, "--tls-client-auth", client_auth]
    return args


def confluent_ssl(pki: Pki, client_cert: bool = False) -> dict:
    """confluent-kafka (librdkafka) settings for an SSL listener."""
    conf = {"security.protocol": "SSL", "ssl.ca.location": pki.ca}
    if client_cert:
        conf.update({"ssl.certificate.location": pki.client_cert,
                     "ssl.key.location": pki.client_key})
    return conf


def kafka_python_ssl(pki: Pki, client_cert: bool = False) -> dict:
    """kafka-python settings for an SSL listener."""
    conf = {"security_protocol": "SSL", "ssl_cafile": pki.ca, "ssl_check_hostname": True}
    if client_cert:
        conf.update({"ssl_certfile": pki.client_cert, "ssl_keyfile": pki.client_key})
    return conf


def kcat_ssl(pki: Pki, client_cert: bool = False) -> list[str]:
    """kcat arguments for an SSL listener."""
    args = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}"]
    if client_cert:
        args += ["-X", f"ssl.certificate.location={pki.client_cert}",
                 "-X", f"ssl.key.location={pki.client_key}"]
    return args


def ssl_context(pki: Pki, client_cert: bool = False) -> ssl.SSLContext:
    """A Python ssl context that trusts the test CA (and presents the client certificate)."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    if client_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


def peer_certificate(host: str, port: int, pki: Pki) -> x509.Certificate:
    """The certificate a TLS server at host:port presents to a new connection."""
    with socket.create_connection((host, port), timeout=10) as raw:
        with ssl_context(pki).wrap_socket(raw, server_hostname=host) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def https_get(url: str, pki: Pki, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET over https trusting the test CA."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl_context(pki)) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def serve_https(broker: Broker, pki: Pki) -> Broker:
    """Makes `broker` (not yet started) wait for its admin API over https: with --http-tls
    the conftest's plain-http readiness check cannot succeed."""

    def wait_ready(timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if broker.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {broker.proc.returncode}; log:\n"
                                   f"{broker.log_tail()}")
            try:
                status, _ = https_get(f"https://127.0.0.1:{broker.admin_port}/v1/status/ready",
                                      pki, timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise TimeoutError(f"broker not ready over https after {timeout}s ({last})")

    broker.wait_ready = wait_ready
    return broker


# ---------------------------------------------------------------------------- SASL (helper sasl)

import base64 as _b64
import json as _json
import time as _time


def sasl_client_conf(broker, mechanism: str, user: str, password: str,
                     protocol: str = "SASL_PLAINTEXT", ca_file: str | None = None) -> dict:
    """A librdkafka (confluent-kafka) config that authenticates as `user`."""
    c = {"bootstrap.servers": broker.bootstrap, "security.protocol": protocol,
         "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}
    if ca_file:
        c["ssl.ca.location"] = ca_file
    return c


def rsa_key():
    """A fresh RSA key for signing test JWTs."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url(b: bytes) -> str:
    return _b64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwks_for(key, kid: str) -> dict:
    """The JSON Web Key Set publishing `key`'s public half as `kid` (RS256)."""
    n = key.public_key().public_numbers()
    as_bytes = lambda i: i.to_bytes((i.bit_length() + 7) // 8, "big")  # noqa: E731
    return {"keys": [{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                      "n": _b64url(as_bytes(n.n)), "e": _b64url(as_bytes(n.e))}]}


def sign_jwt(key, kid: str, claims: dict) -> str:
    """`claims` as a JWT signed RS256 by `key`, with `iat` added when missing."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    claims = {"iat": int(_time.time()), **claims}
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = (_b64url(_json.dumps(header).encode()) + "."
                     + _b64url(_json.dumps(claims).encode()))
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(sig)


# ---------------------------------------------------------------------------- a secured broker


def secure_broker(broker_factory, tmp_path: Path, admin: str, password: str, *args: str,
                  http_tls: bool = False) -> tuple[Broker, Pki, int]:
    """A started broker with a SASL_SSL listener beside its loopback PLAINTEXT one,
    authorization on, `admin` its superuser (created by ICESTREAM_BOOTSTRAP_USER); with
    `http_tls` its HTTP APIs over https too. Returns the broker, its PKI and the SASL_SSL port."""
    from conftest import free_port
    pki = make_pki(tmp_path / "pki")
    sasl_port = free_port()
    b = broker_factory(start=False, args=[
        *tls_args(pki), *(["--http-tls"] if http_tls else []),
        "--authorization", "--superusers", f"User:{admin}", *args,
    ], env={"ICESTREAM_BOOTSTRAP_USER": f"{admin}:{password}"})
    b.extra_args += ["--listeners",
                     f"SASL_SSL://127.0.0.1:{sasl_port},PLAINTEXT://127.0.0.1:{b.kafka_port}"]
    (serve_https(b, pki) if http_tls else b).start()
    return b, pki, sasl_port


# ---------------------------------------------------------------------------- TLS between brokers


def issue_broker_cert(pki: Pki, name: str) -> tuple[str, str]:
    """A broker certificate for --rpc-tls, signed by the PKI's CA: the serverAuth and
    clientAuth usages (each broker is the other's server and client) and the SANs 127.0.0.1,
    ::1 and localhost. Written to `<name>.pem` and `<name>.key`; returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(O="Icestream Tests", CN=name))
            .issuer_name(pki.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]), critical=False)
            .sign(pki.ca_key, hashes.SHA256()))
    cert_path, key_path = pki.dir / f"{name}.pem", pki.dir / f"{name}.key"
    _write_key(key, key_path)
    _write_cert(cert, cert_path)
    return str(cert_path), str(key_path)


def rpc_tls_args(pki: Pki, name: str) -> list[str]:
    """The flags of a broker with --rpc-tls and its own certificate (`issue_broker_cert`)."""
    cert, key = issue_broker_cert(pki, name)
    return ["--rpc-tls", "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-file", pki.ca]
