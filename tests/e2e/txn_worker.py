"""One generation of an exactly-once consume-transform-produce loop (confluent-kafka), run as
a child process by txnkit.Worker so that a test can SIGKILL it like a crashed application.

Reads `src` read_committed in consumer group `group` (static member, so the next generation
takes over its assignment at once) and, per batch, in one transaction writes
`out|<input value>|<txn tag>` to the same partition of `dst` and sends the consumed offsets
with send_offsets_to_transaction. A seeded share of the transactions is aborted (then the
consumer rewinds to the committed offsets). Exits 0 once the group's committed offsets reach
the end of `src`, 3 on a fatal producer or consumer error (fenced: the next generation takes
over).

Its stdout is one JSON event a line: ready, begin, committing, commit, abort, hang, retry,
fatal, done. The spec (argv[1], JSON) is made by txnkit.worker_spec.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)


def emit(ev: str, **kw):
    # CLOCK_MONOTONIC is one clock for every process: the test compares it with its own.
    print(json.dumps({"ev": ev, "t": time.monotonic(), **kw}), flush=True)


def retrying(what: str, fn, timeout: float = 60.0):
    """Calls fn again while it raises a retriable (neither fatal nor abortable) error, as
    librdkafka's transactional API asks."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            if (err.retriable() and not err.fatal() and not err.txn_requires_abort()
                    and time.monotonic() < deadline):
                emit("retry", what=what, err=str(err))
                time.sleep(0.2)
                continue
            raise


def persisting(what: str, fn, timeout: float = 60.0):
    """Calls a consumer operation again while it fails without a fatal error (librdkafka marks
    few consumer errors retriable, and a coordinator that just moved answers with timeouts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            if err.fatal() or time.monotonic() > deadline:
                raise
            emit("retry", what=what, err=str(err))
            time.sleep(0.2)


def main():
    spec = json.loads(sys.argv[1])
    gen = spec["generation"]
    rng = random.Random(spec["seed"] * 1000 + gen)
    src, dst = spec["src"], spec["dst"]
    p = Producer({
        "bootstrap.servers": spec["bootstrap"],
        "transactional.id": spec["transactional_id"],
        "transaction.timeout.ms": spec["transaction_timeout_ms"],
        "linger.ms": 5,
        "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 1000,
        # librdkafka 2.16 re-bootstraps when every broker it knows is down (a single broker
        # killed): the transactional producer then keeps a decommissioned broker handle that
        # never terminates and stops sending anything but Metadata (seen in its debug log,
        # "Handle is terminating" forever). Reconnecting to the known broker instead is what
        # clients did before re-bootstrap existed.
        "metadata.recovery.strategy": "none",
        # The transaction manager's log goes to the worker's log file (its stderr), whose tail
        # a stuck worker's failure shows. It showed why send_offsets_to_transaction once hung
        # past its own timeout (not enforced, confluentinc/librdkafka#5456): a broker that had
        # just restarted listed only itself in Metadata, and librdkafka dropped the live
        # coordinators it had found (fixed in the broker, test_cluster_membership.py).
        "debug": "eos,protocol,broker" if os.environ.get("TXN_DEBUG") else "eos",
    })
    fatal_errors = []

    def on_error(err):
        if err.fatal() or err.code() == KafkaError._FATAL:
            fatal_errors.append(err)

    c = Consumer({
        "error_cb": on_error,
        "bootstrap.servers": spec["bootstrap"],
        "group.id": spec["group"],
        "group.instance.id": "ctp-" + spec["transactional_id"],
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    # Fences the previous generation and aborts its open transaction (so its pending offsets
    # stop being unstable) before this one reads the committed offsets.
    retrying("init", lambda: p.init_transactions(30), timeout=120)
    md = c.list_topics(src, timeout=20).topics[src]
    partitions = sorted(md.partitions)
    ends = {}
    for q in partitions:
        ends[q] = persisting("watermarks", lambda q=q: c.get_watermark_offsets(
            TopicPartition(src, q), timeout=10, cached=False))[1]
    c.subscribe([src])
    emit("ready", ends=ends)

    def committed() -> dict[int, int]:
        got = c.committed([TopicPartition(src, q) for q in partitions], timeout=20)
        return {tp.partition: tp.offset for tp in got}

    def rewind(touched: set[int]):
        """Back to the committed offsets on the partitions the aborted transaction read
        (only those positions moved since the last commit)."""
        offsets = persisting("committed", committed)
        for q in sorted(touched & {tp.partition for tp in c.assignment()}):
            off = offsets.get(q, -1)
            persisting("seek", lambda q=q, off=off: c.seek(
                TopicPartition(src, q, off if off >= 0 else OFFSET_BEGINNING)))

    def abort(tag: str, reason: str, touched: set[int]):
        retrying("abort", lambda: p.abort_transaction(30))
        emit("abort", tag=tag, reason=reason)
        rewind(touched)

    seq = 0
    commits = 0
    last_done_check = 0.0
    while True:
        got = c.consume(num_messages=spec["batch"], timeout=0.5)
        fatal = fatal_errors + [m.error() for m in got if m.error() is not None and (
            m.error().fatal() or m.error().code() == KafkaError._FATAL)]
        if fatal:
            # E.g. a static member fenced by its own rejoin after a session timeout: the
            # application restarts (the next generation).
            emit("fatal", err=str(fatal[0]), where="consumer")
            return 3
        msgs = [m for m in got if not m.error()]
        if not msgs:
            if len(c.assignment()) == len(partitions) and time.monotonic() - last_done_check > 0.5:
                last_done_check = time.monotonic()
                try:
                    now = committed()
                except KafkaException:
                    continue
                if all(now.get(q) == ends[q] for q in partitions):
                    emit("done", committed=now)
                    return 0
            continue
        tag = f"{gen}-{seq}"
        seq += 1
        offsets: dict[int, int] = {}
        touched = {m.partition() for m in msgs}
        p.begin_transaction()
        emit("begin", tag=tag, n=len(msgs))
        try:
            for m in msgs:
                p.produce(dst, b"out|%s|%s" % (m.value(), tag.encode()), partition=m.partition())
                offsets[m.partition()] = m.offset() + 1
            group_md = c.consumer_group_metadata()
            retrying("send_offsets", lambda: p.send_offsets_to_transaction(
                [TopicPartition(src, q, o) for q, o in offsets.items()], group_md, 30))
            if spec["hang_after"] is not None and commits >= spec["hang_after"]:
                # Records and offsets are in the open transaction; the test SIGKILLs us now.
                p.flush(30)
                emit("hang", tag=tag)
                time.sleep(3600)
            if rng.random() < spec["abort_ratio"]:
                abort(tag, "random", touched)
                continue
            emit("committing", tag=tag)
            retrying("commit", lambda: p.commit_transaction(30))
            commits += 1
            emit("commit", tag=tag, offsets=offsets)
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                emit("fatal", tag=tag, err=str(err))
                return 3
            if err.txn_requires_abort():
                abort(tag, str(err), touched)
                continue
            emit("error", tag=tag, err=str(err), code=err.code())
            return 4


if __name__ == "__main__":
    sys.exit(main())
