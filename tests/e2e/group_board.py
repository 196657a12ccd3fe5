"""Bookkeeping shared by the consumer-group tests: who owns which partition, who consumed
what, and waiting for a group to settle."""

from __future__ import annotations

import threading
import time


class Board:
    """Who owns which partition, and who consumed (and committed) what."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owners: dict[int, str] = {}
        self.overlaps: list[str] = []
        self.records: dict[tuple[int, int], list[str]] = {}

    def assign(self, name, partitions):
        with self.lock:
            for p in partitions:
                if self.owners.get(p) not in (None, name):
                    self.overlaps.append(f"{name} got {p} while {self.owners[p]} owns it")
                self.owners[p] = name

    def revoke(self, name, partitions):
        with self.lock:
            for p in partitions:
                if self.owners.get(p) == name:
                    del self.owners[p]

    def consumed(self, name, partition, offset):
        with self.lock:
            self.records.setdefault((partition, offset), []).append(name)

    def by_member(self) -> dict[str, list[int]]:
        with self.lock:
            out: dict[str, list[int]] = {}
            for p, n in self.owners.items():
                out.setdefault(n, []).append(p)
            return {n: sorted(ps) for n, ps in out.items()}

    def wait(self, cond, timeout=60.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: owners {self.by_member()}, "
                             f"{len(self.records)} records consumed")


def balanced(board, names, partitions=6):
    owned = board.by_member()
    return (sorted(owned) == sorted(names)
            and sum(len(v) for v in owned.values()) == partitions
            and all(len(v) == partitions // len(names) for v in owned.values()))
