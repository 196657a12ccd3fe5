"""How long the broker's HTTP listeners stall while the Iceberg translator backfills a topic.

One broker (the binary given as the argument) gets N records (env N, default 200000) of ~200 B
with Iceberg off, then iceberg.mode=key_value; GET /v1/config on the catalog every 50 ms until
the table holds every record. Prints p50/p99/max of the catalog's answer time. Run two
binaries one after the other to compare:

    .venv/bin/python benches/iceberg_catalog_stall.py $CARGO_TARGET_DIR/debug/icestream
"""
import os, sys, time, subprocess, tempfile, urllib.request, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from conftest import free_port
from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ConfigResource, ConfigEntry,
                                   AlterConfigOpType)
bin_ = sys.argv[1]
d = tempfile.mkdtemp()
ports = {k: free_port() for k in ("kafka", "admin", "sr", "ice")}
log = open(os.path.join(d, "log"), "w")
p = subprocess.Popen([bin_, "serve", "--data-dir", d + "/data", "--kafka-addr", f"127.0.0.1:{ports['kafka']}",
    "--admin-addr", f"127.0.0.1:{ports['admin']}", "--schema-registry-addr", f"127.0.0.1:{ports['sr']}",
    "--iceberg-catalog-addr", f"127.0.0.1:{ports['ice']}"], stdout=log, stderr=log)
def get(url):
    return urllib.request.urlopen(url, timeout=120).read()
try:
    for _ in range(100):
        try:
            get(f"http://127.0.0.1:{ports['ice']}/v1/config"); break
        except OSError:
            time.sleep(0.2)
    bs = f"127.0.0.1:{ports['kafka']}"
    a = AdminClient({"bootstrap.servers": bs})
    a.create_topics([NewTopic("t", 3, 1)])["t"].result(20)
    pr = Producer({"bootstrap.servers": bs, "linger.ms": 20})
    N = int(os.environ.get("N", "200000"))
    for i in range(N):
        while True:
            try:
                pr.produce("t", key=str(i).encode(), value=(b"x%d," % i) * 25); break
            except BufferError:
                pr.poll(0.05)
    assert pr.flush(60) == 0
    res = ConfigResource("topic", "t", incremental_configs=[
        ConfigEntry("iceberg.mode", "key_value", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("iceberg.target.lag.ms", "100", incremental_operation=AlterConfigOpType.SET)])
    for f in a.incremental_alter_configs([res]).values():
        f.result(20)
    lat = []; t0 = time.monotonic(); w = 0.0
    while time.monotonic() - t0 < 300 and w < N:
        s = time.monotonic()
        get(f"http://127.0.0.1:{ports['ice']}/v1/config")
        lat.append(time.monotonic() - s)
        m = get(f"http://127.0.0.1:{ports['admin']}/metrics").decode()
        w = sum(float(l.rsplit(" ", 1)[1]) for l in m.splitlines()
                if l.startswith("icestream_iceberg_records_written_total{"))
        time.sleep(0.05)
    lat.sort()
    print(f"{bin_}: {N} records translated={w >= N} in {time.monotonic()-t0:.1f}s; "
          f"{len(lat)} catalog probes: p50 {statistics.median(lat)*1000:.1f} ms, "
          f"p99 {lat[max(0, int(len(lat)*0.99)-1)]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
finally:
    p.kill()
