#!/usr/bin/env python3
"""The cost of inter-broker authentication: the same three-broker cluster on loopback started
with a plain RPC, with a cluster secret (--cluster-secret-file: HMAC on every frame), and with
mutual TLS (--rpc-tls, certificates from a test CA), and the same producer
(benches/replication.py's: 1 KiB values, linger 5 ms, acks=all) writing into an RF=3 topic of
one partition. Each configuration runs `rounds` times, in turn, and the best of each is kept;
it prints records/s and MB/s of each and their ratios to the plain RPC. The brokers share this machine's
cores with the producer, so absolute figures say little; the ratio is the point.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/cluster_auth.py [records] [rounds]
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import ScriptBrokers, metadata, start_cluster, wait_formed  # noqa: E402
from replication import VALUE, run  # noqa: E402
from securekit import make_pki, rpc_tls_args  # noqa: E402


def measure(tmp: Path, args: list[str], records: int) -> float:
    """records/s of acks=all produce into an RF=3 topic of a new cluster started with `args`."""
    factory = ScriptBrokers(tmp)
    try:
        brokers = start_cluster(factory, extra_args=args)
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        for f in admin.create_topics([NewTopic("rf3", 1, 3)], operation_timeout=15).values():
            f.result(30)
        deadline = time.monotonic() + 30
        while metadata(brokers[0], "rf3").topics["rf3"].partitions[0].leader <= 0:
            assert time.monotonic() < deadline, "no leader for rf3"
            time.sleep(0.2)
        run(brokers, "rf3", min(records, 2000), "all")  # warm up connections and the group
        return records / run(brokers, "rf3", records, "all")
    finally:
        factory.stop_all()


def main(records: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icestream-cluster-auth-"))
    secret = tmp / "secret"
    secret.write_bytes(base64.b64encode(os.urandom(32)))
    secret.chmod(0o600)
    pki = make_pki(tmp / "pki")
    configs = {
        "none": [],
        "secret": ["--cluster-secret-file", str(secret)],
        "rpc-tls": rpc_tls_args(pki, "broker"),
    }
    best = dict.fromkeys(configs, 0.0)
    try:
        for i in range(rounds):
            for name, args in configs.items():
                best[name] = max(best[name], measure(tmp / f"{name}{i}", args, records))
    finally:
        # Each round leaves three brokers' data (gigabytes on long runs).
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'rpc':8} {'records/s':>10} {'MB/s':>8}   (RF=3, acks=all, best of {rounds})")
    for k, rps in best.items():
        print(f"{k:8} {rps:10.0f} {rps * len(VALUE) / 1e6:8.1f}   {rps / best['none']:.3f} of none")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000,
         int(sys.argv[2]) if len(sys.argv) > 2 else 2)
