"""Acknowledged records survive a simulated power cut, which loses every unsynced write.

`test_durability.py` kills the broker with SIGKILL, which keeps the page cache: it would pass
with every fdatasync removed. Here the broker runs with the hidden, test-only
`serve --simulate-power-loss-dir LEDGER`: its file operations (engine/src/log/power.rs) journal,
to LEDGER outside the data directory, each file's length at its last completed
fsync/fdatasync (from the blocking or the io_uring backend), and each directory entry created or
renamed since its directory was last fsynced. After SIGKILL, the hidden
`icestream debug power-cut --ledger LEDGER --data-dir DATA` rewinds the data directory to what a
power cut would have left: unsynced creates and renames undone, every file truncated to its last
synced length (`--verbose` lists each change; the tests keep that in
<broker workdir>/power-cuts.log). Then the broker restarts and every acknowledged record must be
there: on one node (one segment, and rolling segments) and in a three-broker cluster with
replication factor 3 whose brokers all lose power at once.

The second test proves this can fail: with the unsafe, test-only
`serve --unsafe-skip-fsync-for-tests` the group commit acknowledges without syncing, and the
same scenario must lose acknowledged records (all of them: nothing appended is ever synced); in
the cluster the switch skips the Raft log's sync too. Without the directory syncs this work
added (a new partition's directories and first segment), the first test fails as well: the
power cut removes the partition directories.

All run on the default segment I/O backend, asserted to be io_uring (whose fsync does not go
through libc, so an LD_PRELOAD shim could not see it; the ledger sits in the broker's own seam).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest
from confluent_kafka import Producer

from cluster import wait_formed
from conftest import broker_binary, consume_all, create_topic, free_port, producer_config

PARTITIONS = 4


def power_cut(broker, ledger) -> str:
    """Applies the power cut to a killed broker's data directory; returns the tool's report."""
    assert not broker.running()
    out = subprocess.run(
        [str(broker_binary()), "debug", "power-cut", "--ledger", str(ledger),
         "--data-dir", str(broker.data_dir), "--verbose"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with (broker.workdir / "power-cuts.log").open("a") as f:
        f.write(out.stdout)
    return out.stdout.strip().splitlines()[-1]


def produce_then_kill(brokers, topic: str, tag: str, rng: random.Random,
                      min_acks: int) -> dict[int, dict[int, bytes]]:
    """Produces idempotently with acks=all to every partition and SIGKILLs the brokers at a
    random moment once at least `min_acks` records were acknowledged. Returns what was
    acknowledged: partition -> {offset: value}."""
    acked: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                acked[msg.partition()][msg.offset()] = msg.value()

    producer = Producer(producer_config(brokers[0], **{
        "bootstrap.servers": ",".join(b.bootstrap for b in brokers),
        "enable.idempotence": True, "acks": "all", "linger.ms": rng.choice([0, 2, 5]),
        "message.timeout.ms": 4000, "socket.timeout.ms": 3000,
        "reconnect.backoff.max.ms": 200}))

    def run():
        seq = 0
        while not stop.is_set():
            try:
                value = b"%s-%d-" % (tag.encode(), seq) + b"x" * rng.randrange(0, 300)
                producer.produce(topic, value, partition=seq % PARTITIONS,
                                 on_delivery=on_delivery)
                seq += 1
            except BufferError:
                producer.poll(0.01)
            producer.poll(0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while sum(len(v) for v in acked.values()) < min_acks:
        assert time.monotonic() < deadline, f"only {sum(len(v) for v in acked.values())} acks"
        assert t.is_alive()
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 1.5))  # a random moment, mid-load
    for b in brokers:
        b.kill9()
    stop.set()
    t.join(10)
    producer.flush(15)  # whatever was not acknowledged fails within message.timeout.ms
    with lock:
        return {p: dict(v) for p, v in acked.items()}


def missing_after_restart(broker, topic: str, acked: dict[int, dict[int, bytes]]) -> list[str]:
    problems = []
    for p in range(PARTITIONS):
        try:
            stored = {m.offset(): m.value() for m in consume_all(broker, topic, [p])}
        except Exception as e:  # e.g. the partition's directory did not survive
            problems += [f"partition {p} offset {o}: partition unreadable ({e})"
                         for o in sorted(acked[p])]
            continue
        for offset, value in sorted(acked[p].items()):
            if stored.get(offset) != value:
                problems.append(f"partition {p} offset {offset}: acknowledged "
                                f"{value[:20]!r}, found {stored.get(offset, b'nothing')[:20]!r}")
    return problems


@pytest.mark.parametrize("segment_bytes,backend", [(None, None), (65536, None), (65536, "syncfs")],
                         ids=["one-segment", "rolling", "rolling-syncfs"])
def test_acknowledged_records_survive_power_cuts(broker_factory, tmp_path, segment_bytes, backend):
    """A few rounds of produce, SIGKILL at a random moment, power cut, restart. `rolling` rolls
    segments all the time: seals, producer snapshots (rename), new segment files. `syncfs`
    makes appends durable with one syncfs(2) shared by every partition instead of an
    fdatasync per file."""
    ledger = tmp_path / "ledger"
    args = ["--simulate-power-loss-dir", str(ledger)]
    if backend:
        args += ["--io-backend", backend]
    broker = broker_factory(args=args)
    expected = f"segment_io={backend or 'io_uring'}"
    assert expected in broker.log_text(), f"expected {expected}"
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    config = {"segment.bytes": str(segment_bytes)} if segment_bytes else {}
    topic = create_topic(broker, partitions=PARTITIONS, config=config)
    everything: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
    for round_ in range(3):
        acked = produce_then_kill([broker], topic, f"r{round_}", rng,
                                  min_acks=rng.randrange(200, 2000))
        for p in range(PARTITIONS):
            everything[p].update(acked[p])
        report = power_cut(broker, ledger)
        print(f"seed {seed} round {round_}: {sum(map(len, acked.values()))} acked; {report}")
        assert "bytes lost" in report
        broker.start()
        problems = missing_after_restart(broker, topic, everything)
        assert not problems, (f"seed {seed} round {round_}: {len(problems)} acknowledged "
                              f"records lost after a power cut:\n" + "\n".join(problems[:20]))


def test_power_cut_loses_acknowledged_records_without_fsync(broker_factory, tmp_path):
    """The check above can fail: acknowledge without syncing and the power cut loses data."""
    ledger = tmp_path / "ledger"
    broker = broker_factory(args=["--simulate-power-loss-dir", str(ledger),
                                  "--unsafe-skip-fsync-for-tests"])
    assert "segment_io=io_uring" in broker.log_text()
    topic = create_topic(broker, partitions=PARTITIONS)
    acked = produce_then_kill([broker], topic, "nosync", random.Random(1), min_acks=500)
    report = power_cut(broker, ledger)
    broker.start()
    problems = missing_after_restart(broker, topic, acked)
    total = sum(map(len, acked.values()))
    print(f"{report}; {len(problems)} of {total} acknowledged records lost, e.g. "
          + "; ".join(problems[:3]))
    # Nothing appended was ever synced, so every acknowledged record is gone.
    assert len(problems) == total, (len(problems), total)



@pytest.mark.parametrize("sync", ["synced", "unsafe-skip-fsync"])
def test_cluster_power_cut_of_every_broker_loses_nothing_acknowledged(broker_factory, tmp_path,
                                                                       sync):
    """Three brokers, replication factor 3, acks=all: acknowledged means in a majority's
    synced Raft log. Cutting the power of all three at once must lose none of it, and must
    lose some when the Raft logs are not synced (`unsafe-skip-fsync`)."""
    skip = ["--unsafe-skip-fsync-for-tests"] if sync == "unsafe-skip-fsync" else []
    rpc = [free_port() for _ in range(3)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc)
    ledgers = [tmp_path / f"ledger{i}" for i in range(3)]
    brokers = [broker_factory(args=["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc[i]}",
                                    "--seeds", seeds, "--simulate-power-loss-dir", str(ledgers[i])] + skip,
                              start=False) for i in range(3)]
    for b in brokers:
        b.start()
    wait_formed(brokers)
    assert all("segment_io=io_uring" in b.log_text() for b in brokers)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    topic = create_topic(brokers[0], partitions=PARTITIONS, replication_factor=3)
    acked = produce_then_kill(brokers, topic, "c", rng, min_acks=rng.randrange(200, 1000))
    reports = [power_cut(b, ledger) for b, ledger in zip(brokers, ledgers)]
    print(f"seed {seed}: {sum(map(len, acked.values()))} acked; " + " | ".join(reports))
    for b in brokers:
        b.start()
    wait_formed(brokers)
    if skip:
        problems = missing_after_restart(brokers[0], topic, acked)
        total = sum(map(len, acked.values()))
        print(f"{len(problems)} of {total} acknowledged records lost, e.g. "
              + "; ".join(problems[:3]))
        assert problems, "acknowledged without any sync, yet nothing was lost"
        return
    deadline = time.monotonic() + 60
    while True:  # leaders are elected again after the restart
        problems = missing_after_restart(brokers[0], topic, acked)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not problems, (f"seed {seed}: {len(problems)} acknowledged records lost after a "
                          "power cut of the whole cluster:\n" + "\n".join(problems[:20]))
