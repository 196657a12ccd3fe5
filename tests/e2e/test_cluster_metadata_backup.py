"""Cluster metadata backup and restore, as an operator who lost every controller log would use
it: `icestream cluster backup` writes the metadata to a file; after every broker's controller
directory is gone, one broker re-forms the controller from the file (`--recover-controller
--restore-metadata`), the others rejoin with empty controller directories, and the topics,
their configs and records and the dynamic broker configs of the backup are back; a file of
another cluster is refused with the reason."""

from __future__ import annotations

import json
import shutil

from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource

from cluster import controller_roles, metadata, read_all, start_cluster, wait_formed
from conftest import unique_topic
from test_cluster_quorum_recovery import with_seeds
from test_cluster_reassign import create, icestream, leaders, rpc_addr, wait_for
from test_dynamic_broker_configs import alter_every_broker, describe, describe_every_broker


def test_the_metadata_comes_back_from_a_backup_file(broker_factory, tmp_path):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    kept = unique_topic("kept")
    create(brokers[0], kept, 2, 3, config={"retention.ms": "7200000"})
    wait_for("kept led", lambda: leaders(brokers[0], kept, 2))
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all"})
    for i in range(30):
        p.produce(kept, value=b"r-%02d" % i, partition=0)
    assert p.flush(30) == 0
    wait_for("the dynamic config feature",
             lambda: alter_every_broker(brokers[0], {"log.retention.bytes": ("SET", "1073741824")})
             == "OK")

    backup = tmp_path / "metadata.json"
    out = icestream("cluster", "backup", "--out", str(backup), "--admin-url", brokers[1].admin_url)
    assert out.returncode == 0, out.stderr
    assert "written to" in out.stdout, out.stdout
    saved = json.loads(backup.read_text())
    assert kept in saved["metadata"]["topics"]
    later = unique_topic("later")
    create(brokers[0], later, 1, 3)
    wait_for("later led", lambda: leaders(brokers[0], later, 1))

    # Every controller log is lost.
    for b in brokers:
        b.stop()
    for b in brokers:
        shutil.rmtree(b.data_dir / "controller")
    first, others = brokers[0], brokers[1:]

    # A backup of another cluster is refused, and the controller does not start.
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(dict(saved, cluster_id="icestream-someone-else")))
    with_seeds(first, rpc_addr(first), ["--recover-controller", "--restore-metadata", str(foreign)])
    first.start()
    wait_for("the refusal", lambda: "this broker belongs to" in first.log_text())
    assert "controller group re-formed" not in first.log_text()
    first.stop()

    # The procedure (docs/operations: Controller quorum loss, from a backup).
    with_seeds(first, rpc_addr(first), ["--recover-controller", "--restore-metadata", str(backup)])
    first.start()
    wait_for("re-formed", lambda: "controller group re-formed" in first.log_text())
    for b in others:
        with_seeds(b, rpc_addr(first), [])
        b.start()
    wait_for("every broker a voter again",
             lambda: set(controller_roles(first).values()) == {"voter"}, timeout=60)

    # What the backup holds is back everywhere; what came after it is gone, as the metadata says.
    wait_for("later deleted", lambda: all(later not in metadata(b).topics for b in brokers))
    for b in brokers:
        assert kept in metadata(b).topics
        cfg = describe(b, ConfigResource.Type.TOPIC, kept)
        assert cfg["retention.ms"].value == "7200000"
        assert cfg["retention.bytes"].value == "1073741824"
    assert describe_every_broker(brokers[2]) == {"log.retention.bytes": "1073741824"}
    wait_for("kept led again", lambda: leaders(brokers[2], kept, 2))
    assert [v for _, v in read_all(brokers[2], kept)] == [b"r-%02d" % i for i in range(30)]
    again = unique_topic("again")
    create(brokers[2], again, 1, 3)
    wait_for("a new topic led", lambda: leaders(brokers[2], again, 1))

    # From then on the broker starts without the flags.
    first.stop()
    with_seeds(first, rpc_addr(first), [])
    first.start()
    wait_formed(brokers)
