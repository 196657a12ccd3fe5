"""Controlled shutdown: a broker stopped with SIGTERM hands every partition leadership (and the
controller's) to another replica before it exits, so that the others name live leaders the
moment it is gone, and a rolling restart of every broker under idempotent acks=all load costs
the producer nothing but retriable errors."""

from __future__ import annotations

import time

from cluster import controller_leader, metadata, start_cluster, wait_formed
from conftest import unique_topic
from history import Load
from test_cluster_reassign import create, icestream, wait_for

PARTITIONS = 6


def views(b, topic):
    """Every partition's (leader, isr) as broker `b` sees them."""
    t = metadata(b, topic).topics[topic]
    return {p: (v.leader, sorted(v.isrs)) for p, v in t.partitions.items()}


def fully_replicated(brokers, topic):
    """Every partition led, with all three replicas in sync, as every running broker sees it."""
    for b in brokers:
        if not b.running():
            continue
        v = views(b, topic)
        if len(v) != PARTITIONS or any(
                leader < 1 or isr != [1, 2, 3] for leader, isr in v.values()):
            return None
    return True


def stop_and_check_handed_over(brokers, i, topic):
    """SIGTERM broker `i` (0-based); once it has exited, the others already name a live leader
    for every partition and for the controller."""
    leaving, node = brokers[i], i + 1
    led = [p for p, (leader, _) in views(leaving, topic).items() if leader == node]
    assert leaving.stop() == 0, "a broker stopped with SIGTERM exits cleanly"
    other = brokers[(i + 1) % 3]
    now = views(other, topic)
    assert all(leader not in (node, -1) for leader, _ in now.values()), (node, led, now)
    assert controller_leader(other) not in (node, -1)
    assert "controlled shutdown: leaderships handed over" in leaving.log_text()
    return led


def status(b) -> str:
    out = icestream("cluster", "status", "--admin-url", b.admin_url)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_sigterm_hands_every_leadership_over_before_the_broker_exits(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=["--replica-lag-time-max-ms", "2000"])
    wait_formed(brokers)
    topic = unique_topic("handoff")
    create(brokers[0], topic, PARTITIONS, 3)
    wait_for("every partition fully replicated", lambda: fully_replicated(brokers, topic))
    wait_for("status: fully replicated",
             lambda: "every partition is fully replicated" in status(brokers[0]))
    # The controller leader, so that both kinds of leadership move.
    i = controller_leader(brokers[0]) - 1
    led = stop_and_check_handed_over(brokers, i, topic)
    assert led, "preferred leaders are spread over the brokers: this one led some"
    # `icestream cluster status` lists every partition of the topic as short of a replica
    # once the stopped broker leaves the ISRs.
    other = brokers[(i + 1) % 3]
    text = wait_for("status listing the topic's partitions", lambda: (
        t := status(other)) and sum(topic in line for line in t.splitlines()) == PARTITIONS
        and t)
    assert "partitions not fully replicated" in text, text
    brokers[i].start()
    wait_for("status: fully replicated again",
             lambda: "every partition is fully replicated" in status(other), timeout=60)


def test_rolling_sigterm_restart_under_idempotent_load_loses_nothing(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("rolling")
    create(brokers[0], topic, PARTITIONS, 3)
    wait_for("every partition fully replicated", lambda: fully_replicated(brokers, topic))
    load = Load(",".join(b.bootstrap for b in brokers), topic, list(range(PARTITIONS)))
    try:
        for i in range(3):
            before = load.acked()
            wait_for("acks before the restart", lambda: load.acked() > before + 100)
            stop_and_check_handed_over(brokers, i, topic)
            time.sleep(0.5)
            brokers[i].start()
            wait_for("the restarted broker back in every ISR",
                     lambda: fully_replicated(brokers, topic), timeout=60)
        before = load.acked()
        wait_for("acks after the last restart", lambda: load.acked() > before + 100)
    finally:
        load.finish()
    errors = load.history.errors
    assert not errors, list(errors.items())[:5]
    load.check_read_back()
