"""Turns benches/report/load.jsonl (written by run.sh) into load.md, load.json and load.png."""

import argparse
import datetime
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def kib(n):
    return f"{n / 1024:.0f} KiB" if n < (1 << 20) else f"{n / (1 << 20):.2f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--librdkafka", default="")
    ap.add_argument("--smp", default="")
    ap.add_argument("--window", default="")
    a = ap.parse_args()
    out = pathlib.Path(a.out_dir)
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    runs = [r for r in rows if r["kind"] == "produce"]
    disk = sorted((r for r in rows if r["kind"] == "disk"), key=lambda r: r["chunk_bytes"])
    by_chunk = {r["chunk_bytes"]: r for r in disk}
    big = by_chunk.get(1 << 20) or disk[-1]

    for r in runs:
        bpf = r["broker"].get("bytes_per_fsync")
        chunk = max(1, round(bpf / 4096)) * 4096 if bpf else None
        match = by_chunk.get(chunk)
        r["disk_match"] = match
        r["fraction_of_matched"] = r["mb_per_s"] / match["mb_per_s"] if match else None
        r["fraction_of_1MiB"] = r["mb_per_s"] / big["mb_per_s"]

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        "# Icestream load benchmark",
        "",
        f"Run {now}. {a.machine}.",
        f"Client: librdkafka {a.librdkafka} (rdkafka crate), acks=all, 1 KiB records, no compression, "
        f"linger.ms 5, at most {a.window} messages in flight. Broker: release build, --smp {a.smp}, "
        "acks=all answered after fdatasync (group commit per partition).",
        "",
        "## Broker",
        "",
        "| partitions | records | MB/s | records/s | p50 ms | p99 ms | p99.9 ms | fdatasyncs | bytes per fdatasync "
        "| mean fdatasync ms | disk MB/s at that chunk | fraction | fraction of 1 MiB-chunk disk |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        b, lat, m = r["broker"], r["latency_ms"], r["disk_match"]
        bpf = kib(b["bytes_per_fsync"]) if b.get("bytes_per_fsync") else "-"
        fmean = f"{b['fsync_mean_ms']:.2f}" if b.get("fsync_mean_ms") is not None else "-"
        dm = f"{m['mb_per_s']:.1f} ({kib(m['chunk_bytes'])})" if m else "-"
        fr = f"{r['fraction_of_matched']:.2f}" if r["fraction_of_matched"] is not None else "-"
        md.append(
            f"| {r['partitions']} | {r['acked']} | {r['mb_per_s']:.1f} | {r['records_per_s']:.0f} "
            f"| {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p999']:.2f} | {b['fsyncs']:.0f} "
            f"| {bpf} | {fmean} | {dm} | {fr} | {r['fraction_of_1MiB']:.2f} |"
        )
    md += [
        "",
        "## Disk: sequential write + one fdatasync per chunk, same filesystem",
        "",
        "| chunk | bytes | fdatasyncs | MB/s | fdatasync p50 ms | fdatasync p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for d in disk:
        md.append(
            f"| {kib(d['chunk_bytes'])} | {d['bytes']} | {d['syncs']} | {d['mb_per_s']:.1f} "
            f"| {d['fdatasync_ms']['p50']:.2f} | {d['fdatasync_ms']['p99']:.2f} |"
        )
    md += [
        "",
        "MB = 10^6 bytes, of record values acknowledged. The fraction compares the broker with the "
        "disk written in chunks of the broker's own bytes per fdatasync (appended batch bytes / "
        "fdatasync count during the run, rounded to 4 KiB), by one writer; the last column compares "
        "it with 1 MiB chunks.",
        "",
        "![load](load.png)",
        "",
    ]
    (out / "load.md").write_text("\n".join(md))
    (out / "load.json").write_text(json.dumps({"date": now, "machine": a.machine, "runs": runs, "disk": disk}, indent=2))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = ["p50", "p99", "p99.9"]
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        vals = [r["latency_ms"][k] for k in ("p50", "p99", "p999")]
        xs = [j + i * width for j in range(3)]
        bars = ax1.bar(xs, vals, width, label=f"{r['partitions']} partition(s)")
        ax1.bar_label(bars, fmt="%.1f", fontsize=8)
    ax1.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(3)], labels)
    ax1.set_ylabel("produce latency, ms (enqueue to delivery report)")
    ax1.set_title("Produce latency, acks=all, 1 KiB records")
    ax1.legend()

    names = [f"broker, {r['partitions']}p" for r in runs] + [f"disk, {kib(d['chunk_bytes'])}" for d in disk]
    vals = [r["mb_per_s"] for r in runs] + [d["mb_per_s"] for d in disk]
    colors = ["tab:blue"] * len(runs) + ["tab:gray"] * len(disk)
    bars = ax2.barh(names, vals, color=colors)
    ax2.bar_label(bars, fmt="%.0f", fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("MB/s")
    ax2.set_title("Broker throughput vs disk write + fdatasync")
    fig.tight_layout()
    fig.savefig(out / "load.png", dpi=110)


if __name__ == "__main__":
    main()
