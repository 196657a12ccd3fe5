#!/usr/bin/env python3
"""Monitoring check (not CI): Prometheus scraping a three-broker cluster under load, then every
Grafana panel query and every alert expression of deploy/ evaluated through Prometheus's HTTP
API, each printed with its value.

Prometheus is Debian's `prometheus` (apt-get install prometheus), run on loopback with a
generated config and its storage in a temporary directory; the brokers tier to a SeaweedFS S3
server on loopback (tests/requirements.txt). Phases, each bounded in time:

1. load: a producer (one tiered RF=3 topic, one Iceberg topic, one plain topic) and a consumer
   group that commits, for `seconds`; a schema registered;
2. a broker stopped (SIGKILL) and the other two scraped a while longer, so that BrokerDown and
   UnderReplicatedPartitions have something to say;
3. every query evaluated; the rules' states read from /api/v1/rules.

    ICESTREAM_BIN=target/debug/icestream .venv/bin/python benches/monitoring.py [seconds]

Prints a Markdown table (docs/monitoring.md holds one run's).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import ScriptBrokers, start_cluster, wait_formed  # noqa: E402
from conftest import free_port, http_get  # noqa: E402
from s3server import WeedS3  # noqa: E402

RULES = ROOT / "deploy" / "prometheus" / "icestream-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "icestream.json"
SCRAPE_S = 1
RATE_WINDOW = "15s"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def query(prom: str, expr: str, at: float | None = None) -> list:
    """An instant query, now or at unix time `at`."""
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode(params)
    d = get_json(url)
    if d["status"] != "success":
        raise RuntimeError(f"{expr}: {d}")
    return d["data"]["result"]


def start_prometheus(tmp: Path, targets: list[str]) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("prometheus")
    if exe is None:
        raise SystemExit("prometheus is not installed: apt-get install prometheus")
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_S}s\n"
        f"  evaluation_interval: {SCRAPE_S}s\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: icestream\n"
        "    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n")
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http_get(f"{url}/-/ready")[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"prometheus did not start: {(tmp / 'prometheus.log').read_text()[-2000:]}")


def load(brokers, seconds: float) -> dict:
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = {
        "orders": NewTopic("orders", 3, 3),
        "tiered": NewTopic("tiered", 1, 3, config={"remote.storage.enable": "true",
                                                     "segment.bytes": "65536"}),
        "lake": NewTopic("lake", 1, 3, config={"iceberg.mode": "key_value",
                                                "iceberg.target.lag.ms": "2000"}),
    }
    for f in admin.create_topics(list(topics.values()), request_timeout=30).values():
        f.result(40)
    time.sleep(2)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": False})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "auto.commit.interval.ms": 500})
    c.subscribe(["orders"])
    sent = consumed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            for t in topics:
                try:
                    p.produce(t, b"v" * 512, key=str(sent).encode())
                    sent += 1
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
        # The consumer reads slower than the producer writes: lag builds up.
        for m in c.consume(100, timeout=0.05):
            consumed += m.error() is None
    p.flush(60)
    c.close()
    schema = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
    req = urllib.request.Request(
        f"{brokers[0].schema_registry_url}/subjects/orders-value/versions",
        data=json.dumps({"schema": json.dumps(schema)}).encode(), method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    urllib.request.urlopen(req, timeout=10).read()
    return {"sent": sent, "consumed": consumed}


def short(result: list, limit: int = 4) -> str:
    if not result:
        return "(no series)"
    parts = []
    for s in result[:limit]:
        labels = {k: v for k, v in s["metric"].items() if k not in ("job", "__name__")}
        name = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        v = float(s["value"][1])
        parts.append(f"{name or 'value'}={v:.4g}")
    more = f" (+{len(result) - limit})" if len(result) > limit else ""
    return "; ".join(parts) + more


def rule_exprs() -> list[tuple[str, str]]:
    text = RULES.read_text()
    out = []
    for m in re.finditer(r"- alert: (\w+)\n((?:\s+.*\n)+?)\s+for:", text):
        block = m.group(2)
        e = re.search(r"expr: \|?\n?((?:.|\n)*)", block).group(1)
        expr = " ".join(line.strip() for line in e.splitlines()
                        if line.strip() and not line.strip().startswith("#"))
        out.append((m.group(1), expr))
    return out


def main(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icestream-monitoring-"))
    weed = WeedS3(tmp / "s3").start()
    factory = ScriptBrokers(tmp)
    prom = None
    try:
        brokers = start_cluster(
            factory, 3, weed.broker_args() + ["--replica-lag-time-max-ms", "5000"],
            env=WeedS3.broker_env())
        wait_formed(brokers)
        proc, prom = start_prometheus(tmp, [f"127.0.0.1:{b.admin_port}" for b in brokers])
        t0 = time.monotonic()
        counts = load(brokers, seconds)
        # Rates are read at the end of the load (its last RATE_WINDOW), the rest again later.
        under_load = time.time() - 1
        print(f"load: {counts['sent']} records produced, {counts['consumed']} consumed by "
              f"group billing in {time.monotonic() - t0:.0f}s")
        # A broker down: long enough for its followers to leave the ISR (5 s) and for
        # Prometheus to see it down.
        brokers[2].kill9()
        print("broker 3 killed; scraping the other two for 15 s")
        time.sleep(15)

        dash = json.loads(DASHBOARD.read_text())
        rows = []
        for panel in dash["panels"]:
            for t in panel.get("targets", []):
                expr = t["expr"].replace("$__rate_interval", RATE_WINDOW)
                rows.append(("panel", panel["title"], expr,
                             short(query(prom, expr, under_load)), short(query(prom, expr))))
        for name, expr in rule_exprs():
            rows.append(("alert", name, expr, short(query(prom, expr, under_load)),
                         short(query(prom, expr))))
        states = {}
        for g in get_json(f"{prom}/api/v1/rules")["data"]["groups"]:
            for r in g["rules"]:
                states[r["name"]] = r.get("state", "?")
        print()
        print("| kind | panel / alert (state at the end) | end of the load | broker 3 down 15 s |")
        print("| --- | --- | --- | --- |")
        for kind, title, expr, loaded, down in rows:
            state = f" [{states.get(title, '')}]" if kind == "alert" else ""
            print(f"| {kind} | {title}{state} | {loaded} | {down} |")
        print()
        print("queries:")
        for kind, title, expr, *_ in rows:
            print(f"  {title}: {expr}")
        proc.terminate()
        proc.wait(10)
    finally:
        factory.stop_all()
        weed.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
