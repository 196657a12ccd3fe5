"""Controller quorum loss, recovered with the documented procedure: two of the three founding
voters are lost for good; the surviving founder re-forms the controller alone
(`--recover-controller`, its own address as seed), the other survivor rejoins with an empty
controller directory and the re-formed broker as seed, is promoted to voter, and the cluster
creates topics again with its metadata and data intact."""

from __future__ import annotations

import shutil

from confluent_kafka import Producer

from cluster import controller_leader, controller_roles, metadata, read_all, wait_formed
from conftest import unique_topic
from test_cluster_reassign import (alter_raw, create, founders_and_fourth, kadmin, leaders,
                                   rpc_addr, wait_for, wait_reassigned)


def with_seeds(b, seeds: str, extra: list[str]):
    """Restarts of `b` use these seeds and `extra` recovery flags (earlier ones dropped)."""
    args = list(b.extra_args)
    args[args.index("--seeds") + 1] = seeds
    if "--restore-metadata" in args:
        i = args.index("--restore-metadata")
        del args[i:i + 2]
    b.extra_args = [a for a in args if a != "--recover-controller"] + extra


def test_a_lost_controller_quorum_is_re_formed_on_the_survivors(broker_factory):
    founders, fourth, brokers = founders_and_fourth(broker_factory)
    third = founders[2]
    kept = unique_topic("kept")
    create(third, kept, 1, 2)
    admin = kadmin(brokers)
    assert alter_raw(admin, {(kept, 0): [3, 4]})[(kept, 0)] == 0
    wait_reassigned(brokers, admin, kept, 0, [3, 4])
    p = Producer({"bootstrap.servers": third.bootstrap, "acks": "all"})
    for i in range(50):
        p.produce(kept, value=b"k-%02d" % i, partition=0)
    assert p.flush(30) == 0

    # Brokers 1 and 2 are gone for good: the controller has no quorum.
    founders[0].kill9()
    founders[1].kill9()
    wait_for("the controller without a leader", lambda: controller_leader(third) == -1,
             timeout=30)

    # The procedure (docs/operations: Controller quorum loss).
    third.stop()
    fourth.stop()
    with_seeds(third, rpc_addr(third), ["--recover-controller"])
    third.start()
    assert "controller group re-formed" in third.log_text()
    shutil.rmtree(fourth.data_dir / "controller")
    with_seeds(fourth, rpc_addr(third), [])
    fourth.start()
    survivors = [third, fourth]
    wait_for("broker 4 promoted to voter", lambda: controller_roles(third).get(4) == "voter"
             and controller_roles(third).get(3) == "voter", timeout=60)

    after = unique_topic("after")
    create(fourth, after, 2, 2)
    wait_for("the new topic led", lambda: leaders(fourth, after, 2))
    for b in survivors:
        assert kept in metadata(b).topics
    assert [v for _, v in read_all(fourth, kept)] == [b"k-%02d" % i for i in range(50)]

    # The flag left on by mistake is refused once others have joined; without it, all is well.
    third.stop()
    with_seeds(third, rpc_addr(third), ["--recover-controller"])
    third.start()
    wait_for("the refusal", lambda: "start without --recover-controller" in third.log_text())
    third.stop()
    with_seeds(third, rpc_addr(third), [])
    third.start()
    wait_formed(survivors)
    again = unique_topic("again")
    create(third, again, 1, 2)
    wait_for("the last topic led", lambda: leaders(third, again, 1))
