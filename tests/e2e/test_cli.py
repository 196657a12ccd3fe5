"""The `icestream` CLI: a client of the running broker, like rpk."""

from __future__ import annotations

import json
import subprocess

from conftest import (admin_client, broker_binary, consume_all, create_topic, free_port,
                      partition_count, produce, unique_topic, wait_for_topic, watermarks)


def cli(broker, *args, input: str | None = None, fmt: str | None = None,
        check: bool = True, timeout: float = 60, brokers: str | None = None,
        admin_url: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(broker_binary()),
           "--brokers", brokers or broker.bootstrap,
           "--admin-url", admin_url or broker.admin_url]
    if fmt:
        cmd += ["--format", fmt]
    cmd += list(args)
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                         stdin=None if input is not None else subprocess.DEVNULL)
    if check:
        assert res.returncode == 0, (
            f"{' '.join(cmd)} exited {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}")
    return res


def cli_json(broker, *args, **kw):
    res = cli(broker, *args, fmt="json", **kw)
    return json.loads(res.stdout)


def assert_one_line_error(res: subprocess.CompletedProcess, *words: str):
    assert res.returncode != 0, f"expected failure, got: {res.stdout}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"error should be one line, got:\n{res.stderr}"
    assert "panicked" not in res.stderr and "RUST_BACKTRACE" not in res.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def test_topic_create_list_describe_delete(broker):
    topic = unique_topic("cli")
    out = cli_json(broker, "topic", "create", topic, "-p", "3", "-c", "retention.ms=3600000",
                   "-c", "cleanup.policy=delete")
    assert out["topic"] == topic
    assert out["partitions"] == 3
    wait_for_topic(broker, topic, 3)

    listed = cli_json(broker, "topic", "list")
    names = {t["name"]: t for t in listed}
    assert names[topic]["partitions"] == 3

    table = cli(broker, "topic", "list").stdout
    assert topic in table and "PARTITIONS" in table

    produce(broker, topic, [{"value": b"x", "partition": 1}] * 4)
    desc = cli_json(broker, "topic", "describe", topic)
    assert desc["name"] == topic
    assert desc["partition_count"] == 3
    hw = {p["partition"]: p["high_watermark"] for p in desc["partitions"]}
    assert hw == {0: 0, 1: 4, 2: 0}
    configs = {c["name"]: c["value"] for c in desc["configs"]}
    assert configs["retention.ms"] == "3600000"
    assert configs["cleanup.policy"] == "delete"
    assert topic in cli(broker, "topic", "describe", topic).stdout

    out = cli_json(broker, "topic", "delete", topic)
    assert [(t["topic"], t["deleted"]) for t in out] == [(topic, True)]
    assert topic not in admin_client(broker).list_topics(timeout=10).topics


def test_topic_alter_config_and_add_partitions(broker):
    topic = create_topic(broker, partitions=2, config={"retention.ms": "1000000"})
    cli(broker, "topic", "alter-config", topic, "--set", "retention.bytes=5000000",
        "--delete", "retention.ms")
    configs = {c["name"]: c for c in cli_json(broker, "topic", "describe", topic)["configs"]}
    assert configs["retention.bytes"]["value"] == "5000000"
    assert "retention.ms" not in configs  # describe shows non-default configs only

    cli(broker, "topic", "add-partitions", topic, "--count", "5")
    assert partition_count(broker, topic) == 5

    bad = cli(broker, "topic", "alter-config", topic, "--set", "retention.ms=never", check=False)
    assert_one_line_error(bad, "retention.ms")


def test_topic_produce_from_stdin_and_consume(broker):
    topic = create_topic(broker, partitions=1)
    lines = [f"line {i}" for i in range(25)]
    cli(broker, "topic", "produce", topic, "--compression", "zstd",
        input="\n".join(lines) + "\n")
    assert [m.value().decode() for m in consume_all(broker, topic)] == lines

    out = cli(broker, "topic", "consume", topic, "-n", "25", timeout=30).stdout
    assert out.splitlines() == lines

    recs = [json.loads(x) for x in cli(broker, "topic", "consume", topic, "-o", "20", "-n", "5",
                                       fmt="json", timeout=30).stdout.splitlines()]
    assert [(r["offset"], r["value"]) for r in recs] == [(i, f"line {i}") for i in range(20, 25)]

    # Keyed produce goes to one partition and the key is stored.
    keyed = create_topic(broker, partitions=4)
    cli(broker, "topic", "produce", keyed, "-k", "user-42", input="a\nb\nc\n")
    msgs = consume_all(broker, keyed)
    assert [(m.key(), m.value()) for m in msgs] == [(b"user-42", b"a"), (b"user-42", b"b"),
                                                    (b"user-42", b"c")]
    assert len({m.partition() for m in msgs}) == 1
    assert sum(watermarks(broker, keyed, p)[1] for p in range(4)) == 3


def test_cluster_info_and_health(broker):
    info = cli_json(broker, "cluster", "info")
    assert str(broker.kafka_port) in json.dumps(info)
    assert str(broker.kafka_port) in cli(broker, "cluster", "info").stdout

    cli(broker, "cluster", "health")
    cli_json(broker, "cluster", "health")  # parses as JSON

    broker.kill9()
    res = cli(broker, "cluster", "health", check=False, timeout=30)
    assert res.returncode != 0


def test_errors_are_one_line_and_non_zero(broker):
    res = cli(broker, "topic", "describe", "no-such-topic", check=False)
    assert_one_line_error(res, "no-such-topic")

    res = cli(broker, "topic", "create", unique_topic(), "-c", "bogus.key=1", check=False)
    assert_one_line_error(res, "bogus.key")

    existing = create_topic(broker)
    res = cli(broker, "topic", "create", existing, check=False)
    assert_one_line_error(res, existing)

    dead = f"127.0.0.1:{free_port()}"
    res = cli(broker, "topic", "list", brokers=dead, check=False, timeout=60)
    assert_one_line_error(res, dead)
