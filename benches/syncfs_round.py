#!/usr/bin/env python3
"""One sync round of N appended files: an fdatasync per file against one syncfs (issue 23).

Each round appends SIZE bytes to each of N files in DIR, then makes them durable either with an
fdatasync of each file in turn or with one `syncfs(2)` of the filesystem (`--io-backend
syncfs`). Printed per mode: wall time per round, the process's CPU per round, the whole
machine's busy CPU per round (syncfs's writeback runs in the kernel's flusher thread, which the
process's CPU misses), and the disk's write requests per round (/proc/diskstats of the device
holding DIR: every process's, so run it on an otherwise quiet disk). The modes alternate.

    benches/syncfs_round.py [--dir DIR] [--files 12] [--size 16384] [--rounds 500] [--repeat 2]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from pathlib import Path

from sync_io import block_requests  # the disk holding a path, from /proc/diskstats

LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def disk_writes(path: str) -> int:
    return block_requests(path)[0]


def machine_busy_s() -> float:
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def run(d: str, mode: str, files: int, size: int, rounds: int) -> str:
    paths = [os.path.join(d, f"{mode}-{i}") for i in range(files)]
    fds = [os.open(p, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_APPEND, 0o644) for p in paths]
    try:
        buf = os.urandom(size)
        os.sync()
        w0, b0, c0, t0 = disk_writes(d), machine_busy_s(), os.times(), time.perf_counter()
        for _ in range(rounds):
            for fd in fds:
                os.write(fd, buf)
            if mode == "fdatasync":
                for fd in fds:
                    os.fdatasync(fd)
            elif LIBC.syncfs(fds[0]) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        t1, c1, b1, w1 = time.perf_counter(), os.times(), machine_busy_s(), disk_writes(d)
    finally:
        for fd, p in zip(fds, paths):
            os.close(fd)
            os.unlink(p)
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    return (f"{mode:9s} {files} files x {size} B: {1e6 * (t1 - t0) / rounds:7.0f} us per round, "
            f"process CPU {1e6 * cpu / rounds:6.0f} us, machine busy {1e6 * (b1 - b0) / rounds:6.0f} us, "
            f"disk writes {(w1 - w0) / rounds:5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="a directory on the disk to measure (default: a temp dir)")
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for _ in range(a.repeat):
            for mode in ("fdatasync", "syncfs"):
                print(run(d, mode, a.files, a.size, a.rounds), flush=True)


if __name__ == "__main__":
    main()
