#!/usr/bin/env python3
"""Writes icestream.json, the Grafana dashboard, from the panel list below.

Edit the panels here and run `python3 deploy/grafana/dashboard.py`; tests/e2e/test_opskit.py
checks that the JSON is up to date and that every metric it queries exists on a broker.
"""
import json
from pathlib import Path

RATE = "$__rate_interval"

# (row title, [(panel title, unit, [(legend, expr)], kind)]); kind: timeseries or stat.
ROWS = [
    ("Overview", [
        ("Brokers up", "none", [("up", 'sum(up{job="icestream"})')], "stat"),
        ("Offline partitions", "none", [("offline", "sum(icestream_offline_partitions)")], "stat"),
        ("Under-replicated partitions", "none",
         [("under-replicated", "sum(icestream_under_replicated_partitions)")], "stat"),
        ("Partitions", "none", [("partitions", "max(icestream_partitions)")], "stat"),
        ("Topics", "none", [("topics", "max(icestream_topics)")], "stat"),
        ("Client connections", "none", [("connections", "sum(icestream_kafka_connections)")], "stat"),
    ]),
    ("Throughput", [
        ("Bytes in per topic", "Bps",
         [("{{topic}}", f"sum by (topic) (rate(icestream_topic_produced_bytes_total[{RATE}]))")],
         "timeseries"),
        ("Bytes out per topic", "Bps",
         [("{{topic}}", f"sum by (topic) (rate(icestream_topic_fetched_bytes_total[{RATE}]))")],
         "timeseries"),
        ("Records in per broker", "rps",
         [("{{instance}}", f"sum by (instance) (rate(icestream_kafka_produced_records_total[{RATE}]))")],
         "timeseries"),
    ]),
    ("Requests", [
        ("Request latency p99 by API", "s",
         [("{{api}}", "histogram_quantile(0.99, sum by (api, le) "
                      f"(rate(icestream_kafka_request_seconds_bucket[{RATE}])))")],
         "timeseries"),
        ("Request latency p50 by API", "s",
         [("{{api}}", "histogram_quantile(0.5, sum by (api, le) "
                      f"(rate(icestream_kafka_request_seconds_bucket[{RATE}])))")],
         "timeseries"),
        ("Requests by API", "reqps",
         [("{{api}}", f"sum by (api) (rate(icestream_kafka_requests_total[{RATE}]))")],
         "timeseries"),
        ("Errors by API and code", "reqps",
         [("{{api}} {{error}}",
           f"sum by (api, error) (rate(icestream_kafka_request_errors_total[{RATE}]))")],
         "timeseries"),
    ]),
    ("Consumer groups", [
        ("Consumer lag per group and topic", "short",
         [("{{group}} / {{topic}}",
           "sum by (group, topic) (icestream_kafka_consumer_group_lag)")], "timeseries"),
        ("Max partition lag per group", "short",
         [("{{group}}", "max by (group) (icestream_kafka_consumer_group_lag)")], "timeseries"),
    ]),
    ("Replication", [
        ("Under-replicated partitions by broker", "none",
         [("{{instance}}", "sum by (instance) (icestream_under_replicated_partitions)")],
         "timeseries"),
        ("Leader changes", "none",
         [("{{instance}}", f"sum by (instance) (increase(icestream_leader_changes_total[{RATE}]))")],
         "timeseries"),
        ("Partitions led by broker", "none",
         [("{{instance}}", "sum by (instance) (icestream_leader_partitions)")], "timeseries"),
    ]),
    ("Storage", [
        ("Local log size per topic (all replicas)", "bytes",
         [("{{topic}}", "sum by (topic) (icestream_log_local_bytes)")], "timeseries"),
        ("Tiered (remote) size per topic", "bytes",
         [("{{topic}}", "max by (topic) (icestream_log_remote_bytes)")], "timeseries"),
        ("Upload backlog", "bytes",
         [("{{instance}} bytes", "sum by (instance) (icestream_tiering_upload_backlog_bytes)")],
         "timeseries"),
        ("Upload backlog segments and errors", "short",
         [("{{instance}} segments", "sum by (instance) (icestream_tiering_upload_backlog_segments)"),
          ("{{instance}} errors/s",
           f"sum by (instance) (rate(icestream_tiering_upload_errors_total[{RATE}]))")],
         "timeseries"),
        ("Uploaded to the tier", "Bps",
         [("{{instance}}", f"sum by (instance) (rate(icestream_tiering_uploaded_bytes_total[{RATE}]))")],
         "timeseries"),
        ("Data directory free", "percentunit",
         [("{{instance}}", "icestream_data_dir_free_bytes / icestream_data_dir_total_bytes")],
         "timeseries"),
        ("fsync p99", "s",
         [("{{instance}}", "histogram_quantile(0.99, sum by (instance, le) "
                           f"(rate(icestream_storage_fsync_seconds_bucket[{RATE}])))")],
         "timeseries"),
    ]),
    ("Iceberg", [
        ("Translation lag vs target per topic", "ms",
         [("{{topic}} lag", "max by (topic) (icestream_iceberg_translation_lag_ms)"),
          ("{{topic}} target", "max by (topic) (icestream_iceberg_target_lag_ms)")],
         "timeseries"),
        ("Untranslated records per topic", "short",
         [("{{topic}}", "sum by (topic) (icestream_iceberg_translation_lag_records)")],
         "timeseries"),
        ("Commits and commit errors per topic", "short",
         [("{{topic}} commits", f"sum by (topic) (increase(icestream_iceberg_commits_total[{RATE}]))"),
          ("{{topic}} errors",
           f"sum by (topic) (increase(icestream_iceberg_commit_errors_total[{RATE}]))")],
         "timeseries"),
    ]),
    ("Schema registry", [
        ("Schema registry requests", "reqps",
         [("{{method}} {{resource}} {{code}}",
           f"sum by (method, resource, code) (rate(icestream_schema_registry_requests_total[{RATE}]))")],
         "timeseries"),
    ]),
]

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, unit, targets, kind, x, y, w, h):
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}}
    return p


def build() -> dict:
    panels, pid, y = [], 1, 0
    for row, items in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid, y = pid + 1, y + 1
        stats = all(k == "stat" for *_, k in items)
        w, h = (4, 4) if stats else (8, 8)
        for i, (title, unit, targets, kind) in enumerate(items):
            x = (i * w) % 24
            if i and x == 0:
                y += h
            panels.append(panel(pid, title, unit, targets, kind, x, y, w, h))
            pid += 1
        y += h
    return {
        "title": "Icestream",
        "uid": "icestream",
        "tags": ["icestream", "kafka"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0,
        }]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("icestream.json")
    out.write_text(render())
    print(f"wrote {out}")
