"""The Java client (kafka-clients 4.4) over SASL_SSL with SCRAM-SHA-512 against a broker with
authorization on: produce and consume as a superuser, a wrong password refused, a user created
with AlterUserScramCredentials, ACLs created and described with the AdminClient, and that user
reading only what its ACLs allow (tests/compat/java/.../Secure.java, one JVM for every case).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from apache_kafka import classpath
from securekit import secure_broker

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret-7f3c"


@pytest.mark.timeout(300)
def test_java_client_over_sasl_ssl_with_acls(broker_factory, tmp_path):
    _b, pki, sasl_port = secure_broker(broker_factory, tmp_path, ADMIN, ADMIN_PASSWORD)
    r = subprocess.run(
        ["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath(),
         "compat.Secure", f"127.0.0.1:{sasl_port}", pki.ca, ADMIN, ADMIN_PASSWORD],
        capture_output=True, text=True, timeout=240)
    print(r.stdout)
    failed = dict(re.findall(r"^FAIL (\S+): (.*)$", r.stdout, re.M))
    assert not failed, (failed, r.stderr[-4000:])
    passed = set(re.findall(r"^PASS (\S+)", r.stdout, re.M))
    assert passed == {
        "scram-sha-512-produce-consume", "wrong-password-refused",
        "alter-describe-user-scram-credentials", "create-describe-acls", "read-only-user",
    }, r.stdout + r.stderr[-4000:]
    assert r.returncode == 0
