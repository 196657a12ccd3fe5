import { bytes, enc, esc, get, J, Page, table } from "../core";

const rates: { t: number; in: number; out: number }[] = [];
let lastCounters: { t: number; in: number; out: number } | null = null;

function counter(metrics: string, name: string): number {
  let sum = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith(name + "_total") || line.startsWith(name + "{") || line.startsWith(name + " ")) {
      const v = Number(line.trim().split(/\s+/).pop());
      if (Number.isFinite(v)) sum += v;
    }
  }
  return sum;
}

function chart(points: { in: number; out: number }[]): string {
  const w = 360;
  const hgt = 90;
  const pad = 4;
  const max = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
  const line = (k: "in" | "out") =>
    points
      .map(
        (p, i) =>
          `${(pad + (i / Math.max(1, points.length - 1)) * (w - 2 * pad)).toFixed(1)},${(hgt - pad - (p[k] / max) * (hgt - 2 * pad)).toFixed(1)}`,
      )
      .join(" ");
  const last = points[points.length - 1] ?? { in: 0, out: 0 };
  return `<svg viewBox="0 0 ${w} ${hgt}" width="100%" height="${hgt}" preserveAspectRatio="none" role="img" aria-label="Throughput over the last ${points.length} samples: in ${bytes(
    last.in,
  )}/s, out ${bytes(last.out)}/s">
    <rect x="0.5" y="0.5" width="${w - 1}" height="${hgt - 1}" fill="#fff" stroke="#d0d5dd"/>
    <line x1="${pad}" x2="${w - pad}" y1="${hgt / 2}" y2="${hgt / 2}" stroke="#eef1f5"/>
    <polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="${line("in")}"/>
    <polyline fill="none" stroke="#b34700" stroke-width="2" stroke-dasharray="5 3" points="${line("out")}"/>
  </svg><p class="legend" id="o-legend"><span class="k-in">In (produced)</span> ${bytes(last.in)}/s · <span class="k-out">Out (fetched)</span> ${bytes(last.out)}/s · top of the chart ${bytes(max)}/s</p>`;
}

export const overview: Page = {
  title: "Overview",
  render(main) {
    main.innerHTML = `<h1>Overview</h1>
      <div class="grid">
        <section aria-labelledby="o-health"><h2 id="o-health">Health</h2><div id="o-h"></div></section>
        <section aria-labelledby="o-tp"><h2 id="o-tp">Throughput</h2><div id="o-t"></div></section>
        <section aria-labelledby="o-st"><h2 id="o-st">Storage</h2><div id="o-s"></div></section>
      </div>
      <section aria-labelledby="o-br"><h2 id="o-br">Brokers</h2><div id="o-b"></div></section>
      <section aria-labelledby="o-ur"><h2 id="o-ur">Partitions not fully replicated</h2><div id="o-u"></div></section>`;
  },
  async refresh(main) {
    const [ready, cluster, brokers, topics, metrics] = await Promise.all([
      fetch("/v1/status/ready").then((r) => r.ok),
      get("/v1/cluster"),
      get("/v1/cluster/brokers"),
      get("/v1/topics"),
      fetch("/metrics").then((r) => r.text()),
    ]);
    const under = (topics as J[]).filter((t) => t.under_replicated_partitions || t.offline_partitions);
    main.querySelector("#o-h")!.innerHTML = `<dl>
      <dt>Status</dt><dd class="${ready ? "ok" : "bad"}">${ready ? "Ready" : "Starting"}</dd>
      <dt>Cluster id</dt><dd>${esc(cluster.cluster_id)}</dd>
      <dt>This broker</dt><dd>${esc(cluster.node_id)} (${esc(cluster.kafka_advertised)})</dd>
      <dt>Topics</dt><dd>${esc(cluster.topics)}</dd>
      <dt>Not fully replicated</dt><dd class="${under.length ? "bad" : "ok"}">${under.length ? `${under.length} topics` : "none"}</dd></dl>`;
    main.querySelector("#o-b")!.innerHTML = table(
      "Brokers",
      ["Id", "Address", "Alive", "State"],
      (brokers.brokers as J[]).map((b) => [
        esc(b.id) + (brokers.controller === b.id ? " (controller)" : ""),
        esc(`${b.host}:${b.port}`),
        b.alive ? "yes" : `<span class="bad">no</span>`,
        esc(b.state),
      ]),
    );
    main.querySelector("#o-u")!.innerHTML = table(
      "Topics with partitions out of sync or offline",
      ["Topic", "Under-replicated", "Offline"],
      under.map((t) => [`<a href="#/topics/${enc(t.name)}">${esc(t.name)}</a>`, esc(t.under_replicated_partitions), esc(t.offline_partitions)]),
      "every partition is fully replicated",
    );
    const now = Date.now() / 1000;
    const c = { t: now, in: counter(metrics, "icestream_kafka_produced_bytes"), out: counter(metrics, "icestream_kafka_fetched_bytes") };
    if (lastCounters && now > lastCounters.t) {
      const dt = now - lastCounters.t;
      rates.push({ t: now, in: Math.max(0, (c.in - lastCounters.in) / dt), out: Math.max(0, (c.out - lastCounters.out) / dt) });
      while (rates.length > 40) rates.shift();
    }
    lastCounters = c;
    main.querySelector("#o-t")!.innerHTML = rates.length ? chart(rates) : `<p>Measuring…</p>`;
    let local = 0;
    let remote = 0;
    const user = (topics as J[]).filter((t) => !t.internal).slice(0, 50);
    const st = await Promise.all(user.map((t) => get(`/v1/topics/${enc(t.name)}/storage`).catch(() => null)));
    for (const s of st)
      for (const p of s?.partitions ?? []) {
        local += p.local_bytes ?? 0;
        remote += p.remote_bytes ?? 0;
      }
    main.querySelector("#o-s")!.innerHTML = `<dl><dt>Local disk</dt><dd>${bytes(local)}</dd><dt>Tiered (object store)</dt><dd>${bytes(
      remote,
    )}</dd></dl><meter min="0" max="${Math.max(1, local + remote)}" value="${remote}" aria-label="Share tiered">${remote}</meter>`;
  },
};
