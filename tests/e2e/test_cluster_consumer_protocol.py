"""A KIP-848 consumer group (`group.protocol=consumer`, librdkafka) whose coordinator is
SIGKILLed: the group's state (member ids, epochs, assignments) is in `__consumer_offsets`, so
the new coordinator knows the members and they consume on with their partitions, without
losing or revoking any, and every record produced meanwhile is consumed."""

from __future__ import annotations

from types import SimpleNamespace

from cluster import start_cluster, wait_formed
from conftest import unique_topic
from group_board import Board, balanced
from test_cluster_reassign import create, leaders, wait_for
from test_consumer_protocol import Member, Trickle, describe


class CountingBoard(Board):
    """A board that also keeps every revocation (or loss) a member was told of."""

    def __init__(self):
        super().__init__()
        self.revocations: list[tuple[str, list[int]]] = []

    def revoke(self, name, partitions):
        with self.lock:
            self.revocations.append((name, list(partitions)))
        super().revoke(name, partitions)


def test_a_consumer_protocol_group_keeps_its_members_across_coordinator_failover(
        broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("kip848")
    create(brokers[0], topic, 4, 3)
    wait_for("leaders", lambda: leaders(brokers[0], topic, 4))
    group = unique_topic("g848")
    everyone = SimpleNamespace(bootstrap=",".join(b.bootstrap for b in brokers))
    board = CountingBoard()
    members = [Member(f"m{i}", everyone, group, topic, board) for i in range(2)]
    trickle = Trickle(everyone, topic)
    try:
        for m in members:
            m.start()
        board.wait(lambda: balanced(board, ["m0", "m1"], partitions=4), what="balanced")
        trickle.start()
        board.wait(lambda: len(board.records) > 100, what="records consumed")
        coordinator = describe(brokers[0], group).coordinator.id
        owners = board.by_member()
        revoked_before = len(board.revocations)

        brokers[coordinator - 1].kill9()
        alive = [b for b in brokers if b.running()]
        at_kill = len(board.records)
        board.wait(lambda: len(board.records) > at_kill + 300, timeout=90,
                   what="consuming on after the coordinator's SIGKILL")
        wait_for("a new coordinator", lambda: describe(alive[0], group).coordinator.id
                 not in (coordinator, None), timeout=30)
        # The members kept their partitions: nothing was revoked or lost.
        assert board.revocations[revoked_before:] == [], board.revocations[revoked_before:]
        assert board.by_member() == owners
        assert not board.overlaps, board.overlaps

        produced = trickle.finish()
        board.wait(lambda: produced <= set(board.records), timeout=90,
                   what="every produced record consumed")
        for m in members:
            assert m.error is None, m.error
    finally:
        trickle.stop_flag.set()
        for m in members:
            m.leave()
