#!/usr/bin/env python3
"""Block requests per fdatasync of an appended file, growing or allocated ahead (issue 23).

For each append size, a fresh file in DIR is appended to and fdatasync'ed N times, once as it
grows and once inside a range `posix_fallocate` allocated first; printed: the mean and p50/p99
time per sync and, from /proc/diskstats of the device holding DIR, the write requests and
cache flushes the disk completed per sync (every process's: run it on an otherwise quiet disk).
A second file can be appended and synced after each sync of the first (`--two`), as the
broker's Raft path syncs a segment and a Raft log.

    benches/sync_io.py [--dir DIR] [--syncs 2000] [--sizes 100,1024,4096,16384] [--two]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def block_requests(path: str) -> tuple[int, int]:
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    name = next(line.split("=", 1)[1].strip() for line in
                Path(f"/sys/dev/block/{dev}/uevent").read_text().splitlines()
                if line.startswith("DEVNAME="))
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == name:
            return int(f[7]), int(f[18]) if len(f) > 18 else 0
    raise RuntimeError(f"{name} is not in /proc/diskstats")


def run(d: str, size: int, syncs: int, ahead: bool, two: bool) -> str:
    paths = [os.path.join(d, "a.bin"), os.path.join(d, "b.bin")]
    fds = [os.open(p, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644) for p in paths]
    try:
        if ahead:
            for fd in fds:
                os.posix_fallocate(fd, 0, max(size * syncs, 100 * syncs) + (1 << 20))
                os.fsync(fd)
        buf, small = b"x" * size, b"y" * 100
        w0, f0 = block_requests(d)
        times = []
        for _ in range(syncs):
            t = time.perf_counter()
            os.write(fds[0], buf)
            os.fdatasync(fds[0])
            if two:
                os.write(fds[1], small)
                os.fdatasync(fds[1])
            times.append(time.perf_counter() - t)
        w1, f1 = block_requests(d)
    finally:
        for fd, p in zip(fds, paths):
            os.close(fd)
            os.unlink(p)
    times.sort()
    return (f"| {size} | {'allocated ahead' if ahead else 'growing'} | "
            f"{statistics.mean(times) * 1e6:.0f} / {times[len(times) // 2] * 1e6:.0f} / "
            f"{times[len(times) * 99 // 100] * 1e6:.0f} | {(w1 - w0) / syncs:.2f} | "
            f"{(f1 - f0) / syncs:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="where the files go (the disk measured)")
    ap.add_argument("--syncs", type=int, default=2000)
    ap.add_argument("--sizes", default="100,1024,4096,16384")
    ap.add_argument("--two", action="store_true",
                    help="after each sync, append 100 bytes to a second file and sync it too")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sync-io-", dir=a.dir) as d:
        if a.two:
            print("(each iteration: the append and sync below, then 100 B appended to a second "
                  "file and synced)\n")
        print("| bytes appended per sync | file | µs per iteration: mean / p50 / p99 "
              "| disk writes per iteration | flushes per iteration |")
        print("|---:|---|---|---:|---:|")
        for size in (int(x) for x in a.sizes.split(",") if x):
            for ahead in (False, True):
                print(run(d, size, a.syncs, ahead, a.two), flush=True)


if __name__ == "__main__":
    main()
