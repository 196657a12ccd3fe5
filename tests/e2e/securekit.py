"""Shared helpers for the security tests (issue 20): certificates, SASL client configs, JWTs.

Each helper's functions live in their own section.
"""

from __future__ import annotations

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
