"""Broker settings from flags, ICESTREAM_* environment variables and a config
file; the admin HTTP API's readiness and Prometheus endpoints."""

from __future__ import annotations

import re
import subprocess

from confluent_kafka import KafkaError, Producer

from conftest import (Delivered, admin_client, broker_binary, consume_all, create_topic,
                      free_port, http_get, partition_count, produce, producer_config,
                      unique_topic, wait_for_topic)
from test_admin import topic_configs


def test_env_var_sets_default_partitions(broker_factory):
    broker = broker_factory(env={"ICESTREAM_DEFAULT_PARTITIONS": "3"})
    topic = create_topic(broker, partitions=-1)
    assert partition_count(broker, topic) == 3


def test_flag_beats_env_var(broker_factory):
    broker = broker_factory(args=["--default-partitions", "2"],
                            env={"ICESTREAM_DEFAULT_PARTITIONS": "5"})
    topic = create_topic(broker, partitions=-1)
    assert partition_count(broker, topic) == 2


def test_config_file(broker_factory, tmp_path):
    conf = tmp_path / "icestream.toml"
    conf.write_text('default-partitions = 4\nmax-message-bytes = 3000\n')
    broker = broker_factory(args=["--config", str(conf)])
    topic = create_topic(broker, partitions=-1)
    assert partition_count(broker, topic) == 4
    assert topic_configs(admin_client(broker), topic)["max.message.bytes"].value == "3000"


def test_everything_from_environment(broker_factory):
    """No flags at all: data dir, listeners and shards come from ICESTREAM_*."""
    b = broker_factory(start=False, use_default_flags=False)
    b.extra_env = {
        "ICESTREAM_DATA_DIR": str(b.data_dir),
        "ICESTREAM_KAFKA_ADDR": b.bootstrap,
        "ICESTREAM_ADMIN_ADDR": f"127.0.0.1:{b.admin_port}",
        "ICESTREAM_SMP": "1",
    }
    b.start()
    topic = create_topic(b)
    produce(b, topic, [b"hello"])
    assert [m.value() for m in consume_all(b, topic)] == [b"hello"]
    assert (b.data_dir / "kafka" / topic).is_dir()


def test_advertised_address_is_what_metadata_returns(broker_factory):
    port = free_port()
    broker = broker_factory(start=False)
    broker.kafka_port = port
    broker.extra_args = ["--advertised-kafka-addr", f"localhost:{port}"]
    broker.start()
    md = admin_client(broker).list_topics(timeout=10)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("localhost", port)]
    # Clients follow the advertised name and still work.
    topic = create_topic(broker)
    produce(broker, topic, [b"via-localhost"])
    assert [m.value() for m in consume_all(broker, topic)] == [b"via-localhost"]


def test_auto_create_topics_when_enabled(broker_factory):
    broker = broker_factory(args=["--auto-create-topics", "true", "--default-partitions", "2"])
    topic = unique_topic("auto")
    produce(broker, topic, [b"created-on-demand"],
            **{"topic.metadata.propagation.max.ms": 10000, "message.timeout.ms": 20000})
    wait_for_topic(broker, topic)
    assert partition_count(broker, topic) == 2
    assert [m.value() for m in consume_all(broker, topic)] == [b"created-on-demand"]


def test_cluster_max_message_bytes_default(broker_factory):
    broker = broker_factory(args=["--max-message-bytes", "2000"])
    topic = create_topic(broker)
    assert topic_configs(admin_client(broker), topic)["max.message.bytes"].value == "2000"
    p = Producer(producer_config(broker, **{"compression.type": "none"}))
    d = Delivered()
    p.produce(topic, b"q" * 5000, on_delivery=d)
    p.flush(20)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    # A topic override above the cluster default wins.
    big = create_topic(broker, config={"max.message.bytes": "100000"})
    produce(broker, big, [b"q" * 5000], **{"compression.type": "none"})


def test_write_caching_on_still_stores_everything(broker_factory):
    broker = broker_factory(args=["--write-caching", "true"])
    topic = create_topic(broker, partitions=2)
    produce(broker, topic, [{"value": b"%d" % i, "partition": i % 2} for i in range(500)])
    broker.restart()  # a clean stop flushes what was cached
    got = sorted(int(m.value()) for m in consume_all(broker, topic))
    assert got == list(range(500))


def test_bad_listen_address_exits_with_a_message(tmp_path):
    res = subprocess.run(
        [str(broker_binary()), "serve", "--data-dir", str(tmp_path / "d"),
         "--kafka-addr", "not-an-address", "--admin-addr", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "kafka-addr" in (res.stderr + res.stdout)
    assert "panicked" not in res.stderr


def test_ready_and_metrics_endpoints(broker):
    status, _, _ = http_get(f"{broker.admin_url}/v1/status/ready")
    assert status == 200
    topic = create_topic(broker)
    produce(broker, topic, [b"m"] * 10)

    status, body, headers = http_get(f"{broker.admin_url}/metrics")
    assert status == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    # Prometheus text format or OpenMetrics text, which Prometheus also scrapes.
    assert ctype.startswith(("text/plain", "application/openmetrics-text")), ctype
    sample = re.compile(
        r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})?'
        r' [-+]?([0-9.eE+-]+|NaN|[+-]?Inf)( [0-9]+)?$')
    samples = 0
    for line in body.splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line) \
                or line.startswith("# "), line
            continue
        assert sample.match(line), f"not Prometheus text: {line!r}"
        samples += 1
    assert samples > 0
    assert "# TYPE " in body

    status, _, _ = http_get(f"{broker.admin_url}/no/such/path")
    assert status == 404


def test_unknown_config_file_key_is_refused(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text('default-partitionz = 4\n')
    res = subprocess.run(
        [str(broker_binary()), "serve", "--config", str(conf), "--data-dir", str(tmp_path / "d"),
         "--kafka-addr", f"127.0.0.1:{free_port()}", "--admin-addr", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "default-partitionz" in res.stderr
