"""The broker process as the operating system sees it."""

from __future__ import annotations

import pytest

from conftest import Broker


def test_the_broker_runs_with_transparent_huge_pages_off(broker: Broker):
    # mimalloc marks its arenas for huge pages; with THP in `madvise` mode each first touch of
    # 2 MiB then zeroed a whole huge page, again and again as memory was reused (up to half the
    # broker's CPU under RF=3 load: benches/README.md, "Allocator"). The broker turns THP off
    # for itself at start (prctl PR_SET_THP_DISABLE), which the kernel reports here.
    with open(f"/proc/{broker.pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    if "THP_enabled" not in fields:
        pytest.skip("this kernel does not report THP_enabled (before Linux 5.0)")
    assert fields["THP_enabled"].strip() == "0"
