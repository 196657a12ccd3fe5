// Icestream web console: plain TypeScript, no framework. Each page renders its static parts
// (headings, forms) once and refreshes its live parts (tables, charts) every few seconds
// without reloading, so forms keep their input and focus.
import "./style.css";

type J = any; // answers of the documented HTTP APIs (docs/console.md)

const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
const REFRESH_MS = 3000;

// ------------------------------------------------------------------ helpers

async function api(method: string, path: string, body?: unknown): Promise<J> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await r.text();
  let data: J = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!r.ok) {
    const msg = (data && (data.error || data.message)) || `${r.status} ${r.statusText}`;
    throw new Error(String(msg));
  }
  return data;
}
const get = (p: string) => api("GET", p);
const enc = encodeURIComponent;

function esc(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

function h(tag: string, attrs: Record<string, string> = {}, html = ""): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.innerHTML = html;
  return e;
}

function bytes(n: number | null | undefined): string {
  if (n == null) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = Number(n);
  while (x >= 1024 && i < u.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i ? x.toFixed(1) : x} ${u[i]}`;
}

function table(caption: string, cols: string[], rows: string[][], empty = "None."): string {
  if (!rows.length) return `<p class="empty">${esc(caption)}: ${esc(empty)}</p>`;
  return `<table><caption>${esc(caption)}</caption><thead><tr>${cols
    .map((c) => `<th scope="col">${esc(c)}</th>`)
    .join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

let toastTimer = 0;
function toast(msg: string, bad = false) {
  const t = document.getElementById("toast")!;
  t.textContent = msg;
  t.className = bad ? "bad show" : "show";
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (t.className = ""), 6000);
}

/// Runs a mutating action from a form, reporting the outcome.
async function act(label: string, f: () => Promise<unknown>, after?: () => unknown) {
  const gen = generation;
  try {
    await f();
    toast(`${label}: done`);
  } catch (e) {
    toast(`${label}: ${(e as Error).message}`, true);
    return;
  }
  // The user may have left the page while the request ran: only the page that asked is
  // refreshed (its elements are gone otherwise), and a failed refresh waits for the next tick.
  if (gen !== generation) return;
  try {
    await after?.();
  } catch {
    /* the next live refresh shows the state */
  }
}

function field(id: string, label: string, input: string): string {
  return `<div class="field"><label for="${id}">${esc(label)}</label>${input}</div>`;
}

function val(root: ParentNode, sel: string): string {
  return (root.querySelector(sel) as HTMLInputElement | null)?.value.trim() ?? "";
}

// ------------------------------------------------------------------ router

interface Page {
  title: string;
  render(main: HTMLElement, arg: string): void | Promise<void>;
  /// Live part, called now and every REFRESH_MS while the page is shown.
  refresh?(main: HTMLElement, arg: string): Promise<void>;
}

const pages: Record<string, Page> = {};
const nav: [string, string][] = [
  ["", "Overview"],
  ["topics", "Topics"],
  ["messages", "Messages"],
  ["groups", "Consumer groups"],
  ["schemas", "Schemas"],
  ["storage", "Storage"],
  ["iceberg", "Iceberg"],
  ["connect", "Connectors"],
  ["security", "Security"],
];

let timer = 0;
let generation = 0;

async function route() {
  const [name = "", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const page = pages[name] ?? pages[""];
  const gen = ++generation;
  clearInterval(timer);
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.getAttribute("data-page") === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const main = document.getElementById("main")!;
  main.innerHTML = "";
  document.getElementById("toast")!.className = "";
  document.title = `${page.title}${arg ? ` ${arg}` : ""} · Icestream console`;
  try {
    await page.render(main, arg);
  } catch (e) {
    main.append(h("p", { class: "error", role: "alert" }, esc((e as Error).message)));
  }
  (main.querySelector("h1") as HTMLElement | null)?.setAttribute("tabindex", "-1");
  if (document.activeElement === document.body || document.activeElement?.closest("#nav"))
    (main.querySelector("h1") as HTMLElement | null)?.focus();
  if (page.refresh) {
    const tick = async () => {
      if (gen !== generation || document.hidden) return;
      try {
        await page.refresh!(main, arg);
        document.getElementById("live")!.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        document.getElementById("live")!.textContent = `Update failed: ${(e as Error).message}`;
      }
    };
    await tick();
    timer = window.setInterval(tick, REFRESH_MS);
  }
}

function start() {
  const n = document.getElementById("nav")!;
  n.innerHTML = `<ul>${nav
    .map(([p, t]) => `<li><a href="#/${p}" data-page="${p}">${esc(t)}</a></li>`)
    .join("")}</ul>`;
  window.addEventListener("hashchange", route);
  route();
}

// ------------------------------------------------------------------ Overview

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

pages[""] = {
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

// ------------------------------------------------------------------ Topics

pages.topics = {
  title: "Topics",
  render(main, arg) {
    if (arg) return topicPage(main, arg);
    main.innerHTML = `<h1>Topics</h1>
      <div class="field"><label for="t-search">Search topics</label><input id="t-search" type="search" autocomplete="off"></div>
      <div id="t-list"></div>
      <section aria-labelledby="t-new"><h2 id="t-new">Create a topic</h2>
      <form id="t-create">
        ${field("c-name", "Name", `<input id="c-name" required pattern="[A-Za-z0-9._\\-]+">`)}
        ${field("c-parts", "Partitions", `<input id="c-parts" type="number" min="1" value="1">`)}
        ${field("c-rf", "Replication factor", `<input id="c-rf" type="number" min="1" value="1">`)}
        ${field("c-ret", "Retention (ms, -1 = forever; empty = default)", `<input id="c-ret" type="number" min="-1">`)}
        ${field("c-ice", "Iceberg mode", `<select id="c-ice"><option value="">disabled (default)</option><option>key_value</option><option>value_schema_id_prefix</option><option>value_schema_latest</option></select>`)}
        <button type="submit">Create topic</button>
      </form></section>`;
    main.querySelector("#t-search")!.addEventListener("input", () => pages.topics.refresh!(main, ""));
    main.querySelector("#t-create")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const configs: Record<string, string> = {};
      if (val(main, "#c-ret")) configs["retention.ms"] = val(main, "#c-ret");
      if (val(main, "#c-ice")) configs["iceberg.mode"] = val(main, "#c-ice");
      const name = val(main, "#c-name");
      act(`Create topic ${name}`, () =>
        api("POST", "/v1/topics", { name, partitions: Number(val(main, "#c-parts")), replicas: Number(val(main, "#c-rf")), configs }),
      ).then(() => pages.topics.refresh!(main, ""));
    });
  },
  async refresh(main, arg) {
    if (arg) return topicRefresh(main, arg);
    const q = val(main, "#t-search").toLowerCase();
    const topics = (await get("/v1/topics")) as J[];
    main.querySelector("#t-list")!.innerHTML = table(
      "Topics",
      ["Name", "Partitions", "Replicas", "Under-replicated", "Internal"],
      topics
        .filter((t) => !q || t.name.toLowerCase().includes(q))
        .map((t) => [
          `<a href="#/topics/${enc(t.name)}">${esc(t.name)}</a>`,
          esc(t.partitions),
          esc(t.replicas),
          t.under_replicated_partitions ? `<span class="bad">${t.under_replicated_partitions}</span>` : "0",
          t.internal ? "yes" : "no",
        ]),
      q ? "no topic matches" : "no topics yet",
    );
  },
};

function topicPage(main: HTMLElement, name: string) {
  main.innerHTML = `<p><a href="#/topics">← All topics</a></p><h1>Topic ${esc(name)}</h1>
    <p id="tp-links"><a href="#/messages/${enc(name)}">Browse messages</a></p>
    <section aria-labelledby="tp-p"><h2 id="tp-p">Partitions</h2><div id="tp-parts"></div></section>
    <section aria-labelledby="tp-c"><h2 id="tp-c">Configs</h2><div id="tp-configs"></div>
      <form id="tp-set">
        ${field("s-key", "Config name", `<input id="s-key" required list="config-names">`)}
        ${field("s-val", "Value (empty: reset to default)", `<input id="s-val">`)}
        <button type="submit">Save config</button>
      </form><datalist id="config-names"></datalist></section>
    <section aria-labelledby="tp-a"><h2 id="tp-a">Add partitions</h2>
      <form id="tp-add">${field("a-count", "New total number of partitions", `<input id="a-count" type="number" min="1" required>`)}
      <button type="submit">Add partitions</button></form></section>
    <section aria-labelledby="tp-d"><h2 id="tp-d">Delete topic</h2>
      <form id="tp-del">${field("d-confirm", `Type the topic name (${name}) to confirm`, `<input id="d-confirm" autocomplete="off" required>`)}
      <button type="submit" class="danger">Delete topic</button></form></section>`;
  const refresh = () => topicRefresh(main, name);
  main.querySelector("#tp-set")!.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = val(main, "#s-key");
    const v = val(main, "#s-val");
    act(`Set ${k}`, () => api("POST", `/v1/topics/${enc(name)}/configs`, v ? { set: { [k]: v } } : { delete: [k] }), refresh);
  });
  main.querySelector("#tp-add")!.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act("Add partitions", () => api("POST", `/v1/topics/${enc(name)}/partitions`, { count: Number(val(main, "#a-count")) }), refresh);
  });
  main.querySelector("#tp-del")!.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = val(main, "#d-confirm");
    if (typed !== name) return toast("The name typed does not match: nothing deleted", true);
    act(`Delete topic ${name}`, () => api("DELETE", `/v1/topics/${enc(name)}?confirm=${enc(typed)}`), () => (location.hash = "#/topics"));
  });
}

const cfgs0 = (t: J): J[] => (t.configs ?? []) as J[];

async function topicRefresh(main: HTMLElement, name: string) {
  const t = await get(`/v1/topics/${enc(name)}`);
  main.querySelector("#tp-parts")!.innerHTML = table(
    "Partitions",
    ["Partition", "Leader", "Replicas", "In sync", "Log start", "Log end", "Local size", "Remote size"],
    (t.partitions as J[]).map((p) => [
      esc(p.partition),
      esc(p.leader),
      esc((p.replicas ?? []).join(", ")),
      esc((p.isr ?? []).join(", ")),
      esc(p.log_start_offset ?? "-"),
      esc(p.high_watermark ?? "-"),
      bytes(p.storage?.local_bytes),
      bytes(p.storage?.remote_bytes),
    ]),
  );
  const ice = cfgs0(t).find((c) => c.name === "iceberg.mode");
  main.querySelector("#tp-links")!.innerHTML =
    `<a href="#/messages/${enc(name)}">Browse messages</a>` +
    (ice && ice.value !== "disabled" ? ` · <a href="#/iceberg/${enc(name)}">Iceberg table status</a>` : "");
  const cfgs = (t.configs ?? []) as J[];
  main.querySelector("#tp-configs")!.innerHTML = table(
    "Configs",
    ["Name", "Value", "Source"],
    cfgs.filter((c) => c.source !== "default").map((c) => [esc(c.name), esc(c.value), esc(c.source)]),
    "all configs have their default values",
  );
  const dl = main.querySelector("#config-names")!;
  if (!dl.childElementCount) dl.innerHTML = cfgs.map((c) => `<option value="${esc(c.name)}">`).join("");
}

// ------------------------------------------------------------------ Messages

function shownValue(v: J): string {
  if (v == null) return `<span class="muted">null</span>`;
  const cut = v.truncated ? ` <span class="muted">(first 64 KiB of ${bytes(v.size)})</span>` : "";
  switch (v.format) {
    case "avro":
    case "protobuf":
    case "json":
      return `<span class="tag">${v.format.toUpperCase()} #${esc(v.schema_id)}</span><pre>${esc(JSON.stringify(v.decoded, null, 1))}</pre>`;
    case "text":
      return `<pre>${esc(v.text)}</pre>${cut}`;
    default:
      return `<span class="tag">hex</span><pre>${esc(v.hex)}</pre>${cut}`;
  }
}

pages.messages = {
  title: "Messages",
  async render(main, arg) {
    const topics = ((await get("/v1/topics")) as J[]).map((t) => t.name as string);
    main.innerHTML = `<h1>Messages</h1>
      <form id="m-form" class="row">
        ${field("m-topic", "Topic", `<select id="m-topic">${topics.map((t) => `<option ${t === arg ? "selected" : ""}>${esc(t)}</option>`).join("")}</select>`)}
        ${field("m-part", "Partition", `<input id="m-part" type="number" min="0" value="0">`)}
        ${field("m-from", "From", `<select id="m-from"><option value="end">the end (latest)</option><option value="start">the start</option><option value="offset">an offset</option><option value="timestamp">a time</option></select>`)}
        ${field("m-offset", "Offset or time (ISO, or ms)", `<input id="m-offset">`)}
        ${field("m-key", "Key contains", `<input id="m-key">`)}
        ${field("m-max", "Records per page", `<input id="m-max" type="number" min="1" max="500" value="20">`)}
        <button type="submit">Show</button>
        <button type="button" id="m-next">Next page</button>
      </form>
      <p id="m-info" class="muted"></p><div id="m-list"></div>
      <section aria-labelledby="m-p"><h2 id="m-p">Produce a message</h2>
      <form id="m-produce">
        ${field("p-part", "Partition (empty: by key)", `<input id="p-part" type="number" min="0">`)}
        ${field("p-key", "Key", `<input id="p-key">`)}
        ${field("p-value", "Value", `<textarea id="p-value" rows="3"></textarea>`)}
        ${field("p-headers", "Headers (JSON object)", `<input id="p-headers" placeholder='{"source":"console"}'>`)}
        <button type="submit">Produce</button>
      </form></section>`;
    let next: number | null = null;
    const show = async (from?: string, offset?: number) => {
      const topic = val(main, "#m-topic");
      if (!topic) return;
      const p = new URLSearchParams({ partition: val(main, "#m-part") || "0", max_records: val(main, "#m-max") || "20", from: from ?? val(main, "#m-from") });
      const o = val(main, "#m-offset");
      if (offset !== undefined) p.set("offset", String(offset));
      else if (p.get("from") === "offset") p.set("offset", o || "0");
      else if (p.get("from") === "timestamp") p.set("timestamp", String(/^\d+$/.test(o) ? Number(o) : Date.parse(o) || 0));
      if (val(main, "#m-key")) p.set("key", val(main, "#m-key"));
      const r = await get(`/v1/topics/${enc(topic)}/records?${p}`);
      next = r.next_offset;
      main.querySelector("#m-info")!.textContent = `Partition ${r.partition}: offsets ${r.log_start_offset} to ${r.high_watermark}; showing from ${r.start_offset}, ${r.records.length} records (${bytes(r.scanned_bytes)} read)`;
      main.querySelector("#m-list")!.innerHTML = table(
        `Records of ${topic}`,
        ["Offset", "Time", "Key", "Value", "Headers"],
        (r.records as J[]).map((m) => [
          esc(m.offset),
          esc(new Date(m.timestamp).toISOString()),
          m.key ? shownValue(m.key) : `<span class="muted">null</span>`,
          shownValue(m.value),
          (m.headers as J[]).map((x) => `${esc(x.key)}: ${esc(x.value?.text ?? x.value?.hex ?? "null")}`).join("<br>"),
        ]),
        "no records in this range",
      );
    };
    (main as J)._show = show;
    main.querySelector("#m-form")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      show().catch((e) => toast(e.message, true));
    });
    main.querySelector("#m-next")!.addEventListener("click", () => {
      if (next != null) show("offset", next).catch((e) => toast(e.message, true));
    });
    main.querySelector("#m-produce")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const topic = val(main, "#m-topic");
      act(`Produce to ${topic}`, async () => {
        const hs = val(main, "#p-headers");
        const r = await api("POST", `/v1/topics/${enc(topic)}/records`, {
          partition: val(main, "#p-part") ? Number(val(main, "#p-part")) : undefined,
          key: val(main, "#p-key") || undefined,
          value: (main.querySelector("#p-value") as HTMLTextAreaElement).value,
          headers: hs ? JSON.parse(hs) : {},
        });
        toast(`Produced to ${topic}[${r.partition}] at offset ${r.offset}`);
      });
    });
  },
  async refresh(main) {
    // Follow the end live; other positions stay where the reader put them.
    if (val(main, "#m-from") === "end" && (main as J)._show) await (main as J)._show();
  },
};

// ------------------------------------------------------------------ Consumer groups

pages.groups = {
  title: "Consumer groups",
  render(main, arg) {
    if (!arg) {
      main.innerHTML = `<h1>Consumer groups</h1><div id="g-list"></div>`;
      return;
    }
    main.innerHTML = `<p><a href="#/groups">← All groups</a></p><h1>Group ${esc(arg)}</h1>
      <div id="g-head"></div>
      <section aria-labelledby="g-m"><h2 id="g-m">Members</h2><div id="g-members"></div></section>
      <section aria-labelledby="g-l"><h2 id="g-l">Lag per partition</h2><div id="g-lag"></div></section>
      <section aria-labelledby="g-r"><h2 id="g-r">Reset offsets</h2>
      <p class="muted">Only a group without members (state Empty) can be reset: a running consumer would overwrite the offsets.</p>
      <form id="g-reset">
        ${field("r-topic", "Topic", `<input id="r-topic" required>`)}
        ${field("r-to", "To", `<select id="r-to"><option value="start">the start (earliest)</option><option value="end">the end (latest)</option><option value="offset">an offset</option><option value="timestamp">a time</option></select>`)}
        ${field("r-offset", "Offset", `<input id="r-offset" type="number" min="0">`)}
        ${field("r-time", "Time (local; or ms since the epoch below)", `<input id="r-time" type="datetime-local" step="1">`)}
        ${field("r-ts", "Timestamp (ms since the epoch)", `<input id="r-ts" type="number" min="0">`)}
        ${field("r-part", "Partition (empty: all)", `<input id="r-part" type="number" min="0">`)}
        <button type="submit" id="r-go">Reset offsets</button>
      </form></section>`;
    main.querySelector("#g-reset")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const mode = val(main, "#r-to");
      const to = mode === "offset" ? val(main, "#r-offset") : mode;
      const part = val(main, "#r-part");
      // A time resets to each partition's first record at or after it (the end if none is).
      let timestamp: number | undefined;
      if (mode === "timestamp") {
        const ms = val(main, "#r-ts");
        const local = val(main, "#r-time");
        timestamp = ms ? Number(ms) : local ? new Date(local).getTime() : NaN;
        if (!Number.isFinite(timestamp)) return toast("Give a time or a timestamp in milliseconds", true);
      }
      act(`Reset ${arg}`, () =>
        api("POST", `/v1/groups/${enc(arg)}/reset`, { topic: val(main, "#r-topic"), to, timestamp, partition: part ? Number(part) : undefined }),
      ).then(() => pages.groups.refresh!(main, arg));
    });
  },
  async refresh(main, arg) {
    if (!arg) {
      const gs = (await get("/v1/groups")) as J[];
      main.querySelector("#g-list")!.innerHTML = table(
        "Consumer groups",
        ["Group", "State", "Protocol"],
        gs.map((g) => [`<a href="#/groups/${enc(g.group)}">${esc(g.group)}</a>`, esc(g.state), esc(g.protocol_type)]),
        "no groups",
      );
      return;
    }
    const g = await get(`/v1/groups/${enc(arg)}`);
    main.querySelector("#g-head")!.innerHTML = `<dl><dt>State</dt><dd id="g-state">${esc(g.state)}</dd><dt>Protocol</dt><dd>${esc(
      g.protocol_type,
    )} ${esc(g.protocol)}</dd><dt>Total lag</dt><dd id="g-total">${esc(g.total_lag)}</dd></dl>`;
    main.querySelector("#g-members")!.innerHTML = table(
      "Members",
      ["Member", "Client", "Host", "Assignment"],
      (g.members as J[]).map((m) => [
        esc(m.member_id),
        esc(m.client_id),
        esc(m.client_host ?? m.host),
        esc((m.partitions ?? []).join(", ")),
      ]),
      "no members (the group is empty)",
    );
    main.querySelector("#g-lag")!.innerHTML = table(
      "Lag per partition",
      ["Topic", "Partition", "Committed", "Log end", "Lag", "Member"],
      (g.partitions as J[]).map((p) => [esc(p.topic), esc(p.partition), esc(p.committed_offset ?? "-"), esc(p.log_end_offset ?? "-"), esc(p.lag ?? "-"), esc(p.member_id ?? "-")]),
      "no committed offsets",
    );
    const t = main.querySelector<HTMLInputElement>("#r-topic")!;
    if (!t.value && g.partitions?.length) t.value = g.partitions[0].topic;
    main.querySelector<HTMLButtonElement>("#r-go")!.disabled = g.state !== "Empty";
  },
};

// ------------------------------------------------------------------ Schemas

/// Line diff (longest common subsequence), as rows of [left, right, kind].
function diff(a: string[], b: string[]): [string, string, string][] {
  const n = a.length;
  const m = b.length;
  const L: number[][] = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out: [string, string, string][] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) out.push([a[i++], b[j++], "same"]);
    else if (j < m && (i >= n || L[i][j + 1] >= L[i + 1][j])) out.push(["", b[j++], "add"]);
    else out.push([a[i++], "", "del"]);
  }
  return out;
}

function pretty(schema: string): string[] {
  try {
    return JSON.stringify(JSON.parse(schema), null, 2).split("\n");
  } catch {
    return schema.split("\n");
  }
}

const SR = "/schema-registry";

pages.schemas = {
  title: "Schemas",
  async render(main, arg) {
    if (!arg) {
      main.innerHTML = `<h1>Schemas</h1><div id="s-list"></div>
        <section aria-labelledby="s-new"><h2 id="s-new">Register a schema</h2><form id="s-reg">
        ${field("n-subject", "Subject", `<input id="n-subject" required>`)}
        ${field("n-type", "Type", `<select id="n-type"><option>AVRO</option><option>JSON</option><option>PROTOBUF</option></select>`)}
        ${field("n-schema", "Schema", `<textarea id="n-schema" rows="6" required></textarea>`)}
        <button type="submit">Register</button></form></section>`;
      main.querySelector("#s-reg")!.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const s = val(main, "#n-subject");
        act(`Register ${s}`, () => api("POST", `${SR}/subjects/${enc(s)}/versions`, { schemaType: val(main, "#n-type"), schema: val(main, "#n-schema") }), () => (location.hash = `#/schemas/${enc(s)}`));
      });
      return;
    }
    const versions = (await get(`${SR}/subjects/${enc(arg)}/versions`)) as number[];
    const opts = (sel: number) => versions.map((v) => `<option ${v === sel ? "selected" : ""}>${v}</option>`).join("");
    const latest = versions[versions.length - 1];
    const cur = await get(`${SR}/subjects/${enc(arg)}/versions/latest`);
    main.innerHTML = `<p><a href="#/schemas">← All subjects</a></p><h1>Subject ${esc(arg)}</h1>
      <dl><dt>Versions</dt><dd>${versions.join(", ")}</dd><dt>Compatibility</dt><dd id="s-compat"></dd><dt>Type</dt><dd>${esc(cur.schemaType ?? "AVRO")}</dd></dl>
      <form id="s-cfg" class="row">${field("s-level", "Compatibility level", `<select id="s-level">${["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"].map((l) => `<option>${l}</option>`).join("")}</select>`)}<button type="submit">Set level</button></form>
      <section aria-labelledby="s-d"><h2 id="s-d">Compare versions</h2>
      <form class="row" id="s-cmp">${field("s-a", "Left version", `<select id="s-a">${opts(versions.length > 1 ? versions[versions.length - 2] : latest)}</select>`)}${field("s-b", "Right version", `<select id="s-b">${opts(latest)}</select>`)}</form>
      <div id="s-diff"></div></section>
      <section aria-labelledby="s-dr"><h2 id="s-dr">Check or register a draft</h2><form id="s-draft">
      ${field("s-text", "Draft schema", `<textarea id="s-text" rows="8">${esc(pretty(cur.schema).join("\n"))}</textarea>`)}
      <button type="submit">Check compatibility</button> <button type="button" id="s-register">Register as new version</button></form>
      <p id="s-result" role="status"></p></section>`;
    const type = cur.schemaType ?? "AVRO";
    const level = await get(`${SR}/config/${enc(arg)}?defaultToGlobal=true`).catch(() => ({}));
    main.querySelector("#s-compat")!.textContent = level.compatibilityLevel ?? "-";
    (main.querySelector("#s-level") as HTMLSelectElement).value = level.compatibilityLevel ?? "BACKWARD";
    const showDiff = async () => {
      const [a, b] = await Promise.all([
        get(`${SR}/subjects/${enc(arg)}/versions/${val(main, "#s-a")}`),
        get(`${SR}/subjects/${enc(arg)}/versions/${val(main, "#s-b")}`),
      ]);
      const rows = diff(pretty(a.schema), pretty(b.schema));
      const mark = (k: string, side: string) => (k === "add" && side === "r" ? "add" : k === "del" && side === "l" ? "del" : "");
      main.querySelector("#s-diff")!.innerHTML = `<table class="diff"><caption>Version ${a.version} (id ${a.id}) beside version ${b.version} (id ${b.id}); ${
        rows.filter((r) => r[2] !== "same").length
      } lines differ</caption><thead><tr><th scope="col">Version ${a.version}</th><th scope="col">Version ${b.version}</th></tr></thead><tbody>${rows
        .map(([l, r, k]) => `<tr><td class="${mark(k, "l")}">${k === "del" ? "<span class=\"sr\">removed: </span>" : ""}${esc(l)}</td><td class="${mark(k, "r")}">${k === "add" ? "<span class=\"sr\">added: </span>" : ""}${esc(r)}</td></tr>`)
        .join("")}</tbody></table>`;
    };
    main.querySelector("#s-a")!.addEventListener("change", showDiff);
    main.querySelector("#s-b")!.addEventListener("change", showDiff);
    await showDiff();
    main.querySelector("#s-cfg")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      act("Set compatibility", () => api("PUT", `${SR}/config/${enc(arg)}`, { compatibility: val(main, "#s-level") }), () => route());
    });
    const draft = () => ({ schemaType: type, schema: (main.querySelector("#s-text") as HTMLTextAreaElement).value });
    const result = main.querySelector("#s-result")!;
    main.querySelector("#s-draft")!.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("POST", `${SR}/compatibility/subjects/${enc(arg)}/versions/latest?verbose=true`, draft());
        result.textContent = r.is_compatible ? "Compatible with the latest version." : `Not compatible: ${(r.messages ?? []).join("; ")}`;
        result.className = r.is_compatible ? "ok" : "bad";
      } catch (e) {
        result.textContent = (e as Error).message;
        result.className = "bad";
      }
    });
    main.querySelector("#s-register")!.addEventListener("click", () =>
      act(`Register ${arg}`, () => api("POST", `${SR}/subjects/${enc(arg)}/versions`, draft()), () => route()),
    );
  },
  async refresh(main, arg) {
    if (arg) return;
    const subjects = (await get(`${SR}/subjects`)) as string[];
    main.querySelector("#s-list")!.innerHTML = table(
      "Subjects",
      ["Subject"],
      subjects.map((s) => [`<a href="#/schemas/${enc(s)}">${esc(s)}</a>`]),
      "no subjects registered",
    );
  },
};

// ------------------------------------------------------------------ Storage

const unmounting = new Set<string>();

pages.storage = {
  title: "Storage",
  render(main) {
    main.innerHTML = `<h1>Storage</h1>
      <section aria-labelledby="st-t"><h2 id="st-t">Topics</h2><p class="muted">Unmounting uploads a topic entirely to the object store and removes it from the cluster; mounting brings it back.</p><div id="st-topics"></div></section>
      <section aria-labelledby="st-u"><h2 id="st-u">Unmounts in progress</h2><div id="st-progress"></div></section>
      <section aria-labelledby="st-m"><h2 id="st-m">Mountable topics</h2><div id="st-mountable"></div></section>`;
    main.addEventListener("click", (ev) => {
      const b = (ev.target as HTMLElement).closest("button[data-unmount],button[data-mount]") as HTMLButtonElement | null;
      if (!b) return;
      const refresh = () => pages.storage.refresh!(main, "");
      if (b.dataset.unmount) {
        const t = b.dataset.unmount;
        if (!confirm(`Unmount topic ${t}? Producers and consumers lose it until it is mounted again.`)) return;
        unmounting.add(t);
        act(`Unmount ${t}`, () => api("POST", "/v1/topics/unmount", { topic: t }), refresh);
      } else if (b.dataset.mount) {
        const t = b.dataset.mount;
        act(`Mount ${t}`, () => api("POST", "/v1/topics/mount", { topic: t }), refresh);
      }
    });
  },
  async refresh(main) {
    const topics = ((await get("/v1/topics")) as J[]).filter((t) => !t.internal);
    const st = await Promise.all(topics.slice(0, 100).map((t) => get(`/v1/topics/${enc(t.name)}/storage`).catch(() => null)));
    main.querySelector("#st-topics")!.innerHTML = table(
      "Topics and where their data is",
      ["Topic", "Tiering", "Local", "Remote", "Action"],
      st
        .filter((s) => s)
        .map((s: J) => {
          const sum = (k: string) => (s.partitions as J[]).reduce((a, p) => a + (p[k] ?? 0), 0);
          return [
            esc(s.topic),
            s.remote_storage ? "on" : "off",
            bytes(sum("local_bytes")),
            bytes(sum("remote_bytes")),
            `<button type="button" data-unmount="${esc(s.topic)}" aria-label="Unmount ${esc(s.topic)}">Unmount</button>`,
          ];
        }),
      "no topics",
    );
    const prog: string[][] = [];
    for (const t of [...unmounting]) {
      const s = await get(`/v1/topics/unmount/status/${enc(t)}`).catch(() => null);
      if (!s) continue;
      const pct = s.total_records ? Math.round((100 * s.uploaded_records) / s.total_records) : s.state === "done" ? 100 : 0;
      prog.push([esc(t), esc(s.state), `<progress max="100" value="${pct}" aria-label="Unmount of ${esc(t)}">${pct}%</progress> ${pct}%`, bytes(s.remote_bytes), esc(s.error ?? "")]);
    }
    main.querySelector("#st-progress")!.innerHTML = table("Unmounts", ["Topic", "State", "Progress", "Uploaded", "Error"], prog, "none started from this page");
    const m = (await get("/v1/topics/mountable")) as J[];
    main.querySelector("#st-mountable")!.innerHTML = table(
      "Mountable topics",
      ["Topic", "Partitions", "Action"],
      m.map((x) => [
        esc(x.topic),
        esc(x.partitions?.length ?? x.partitions ?? (x.error ? `error: ${x.error}` : "")),
        x.error ? "" : `<button type="button" data-mount="${esc(x.topic)}" aria-label="Mount ${esc(x.topic)}">Mount</button>`,
      ]),
      "nothing to mount",
    );
  },
};

// ------------------------------------------------------------------ Iceberg

function snapshot(sn: J): string {
  if (!sn) return "none yet";
  const sum = sn.summary ?? {};
  const at = sn.timestamp_ms ? new Date(sn.timestamp_ms).toISOString() : "?";
  return esc(`${sn.snapshot_id} at ${at}: ${sum["added-records"] ?? "?"} records added, ${sum["total-records"] ?? "?"} in total, ${sum["total-data-files"] ?? "?"} data files`);
}

pages.iceberg = {
  title: "Iceberg",
  render(main, arg) {
    main.innerHTML = arg
      ? `<p><a href="#/iceberg">← All Iceberg topics</a></p><h1>Iceberg table of ${esc(arg)}</h1><div id="i-one"></div>`
      : `<h1>Iceberg</h1><p class="muted">Topics with iceberg.mode set are translated into Iceberg tables of the built-in catalog.</p><div id="i-list"></div>`;
  },
  async refresh(main, arg) {
    if (arg) {
      const s = await get(`/v1/iceberg/topics/${enc(arg)}`);
      main.querySelector("#i-one")!.innerHTML = `<dl>
        <dt>Mode</dt><dd>${esc(s.mode)}</dd><dt>Catalog</dt><dd>${esc(s.catalog)}</dd>
        <dt>Table</dt><dd>${esc(s.table ?? "-")}</dd><dt>Table exists</dt><dd id="i-exists">${s.table_exists ? "yes" : "no"}</dd>
        <dt>Location</dt><dd>${esc(s.location ?? "-")}</dd>
        <dt>Last snapshot</dt><dd id="i-snap">${snapshot(s.snapshot)}</dd>
        <dt>Lag</dt><dd>${esc(s.lag_records ?? "-")} records${s.lag_ms != null ? `, ${esc(s.lag_ms)} ms (target ${esc(s.target_lag_ms)} ms)` : ""}</dd>
        <dt>Records written</dt><dd>${esc(s.records_written ?? 0)}</dd><dt>Commits</dt><dd>${esc(s.commits ?? 0)} (${esc(s.commit_errors ?? 0)} failed)</dd>
        <dt>Dead-letter records</dt><dd>${esc(s.dlq_records ?? 0)}</dd><dt>Last error</dt><dd>${esc(s.last_error ?? "none")}</dd></dl>` +
        table("Partitions", ["Partition", "Translated up to", "High watermark", "Lag"], (s.partitions ?? []).map((p: J) => [esc(p.partition), esc(p.next_offset), esc(p.high_watermark), esc(p.lag)]));
      return;
    }
    const topics = ((await get("/v1/topics")) as J[]).filter((t) => !t.internal);
    const st = await Promise.all(topics.slice(0, 100).map((t) => get(`/v1/iceberg/topics/${enc(t.name)}`).catch(() => null)));
    main.querySelector("#i-list")!.innerHTML = table(
      "Iceberg topics",
      ["Topic", "Mode", "Table", "Last snapshot", "Lag (records)", "Dead letters"],
      st
        .filter((s) => s && s.mode && s.mode !== "disabled" && s.mode !== "off")
        .map((s: J) => [
          `<a href="#/iceberg/${enc(s.topic)}">${esc(s.topic)}</a>`,
          esc(s.mode),
          esc(s.table ?? "-") + (s.table_exists === false ? " (not created yet)" : ""),
          esc(s.snapshot?.snapshot_id ?? s.snapshot?.["snapshot-id"] ?? (s.snapshot ? "yes" : "none")),
          esc(s.lag_records ?? "-"),
          esc(s.dlq_records ?? 0),
        ]),
      "no topic has iceberg.mode set",
    );
  },
};

// ------------------------------------------------------------------ Connectors

pages.connect = {
  title: "Connectors",
  render(main) {
    main.innerHTML = `<h1>Connectors</h1><p class="muted">Kafka Connect clusters given to the broker with <code>serve --connect-url name=URL</code>.</p><div id="k-list"></div>`;
    const refresh = () => pages.connect.refresh!(main, "");
    main.addEventListener("click", (ev) => {
      const b = (ev.target as HTMLElement).closest("button[data-action]") as HTMLButtonElement | null;
      if (!b) return;
      const { cluster, connector, action, index } = b.dataset;
      if (action === "delete") {
        // Deleting asks for the connector's name to be typed, as deleting a topic does.
        const form = main.querySelector<HTMLFormElement>(`#k-del-${index}`)!;
        form.dataset.connector = connector!;
        form.hidden = false;
        main.querySelector(`#k-del-label-${index}`)!.textContent = `Type the connector name (${connector}) to delete it`;
        const input = main.querySelector<HTMLInputElement>(`#k-confirm-${index}`)!;
        input.value = "";
        input.focus();
        return;
      }
      act(`${action} ${connector}`, () => api("POST", `/v1/connect/${enc(cluster!)}/connectors/${enc(connector!)}/${action}`), refresh);
    });
    main.addEventListener("submit", (ev) => {
      const form = ev.target as HTMLFormElement;
      const cluster = form.dataset.cluster;
      if (!cluster) return;
      ev.preventDefault();
      if (form.classList.contains("k-create")) {
        const name = val(form, "input");
        let config: unknown;
        try {
          config = JSON.parse((form.querySelector("textarea") as HTMLTextAreaElement).value);
        } catch (e) {
          return toast(`The config is not JSON: ${(e as Error).message}`, true);
        }
        if (!config || typeof config !== "object" || Array.isArray(config)) return toast("The config must be a JSON object of settings", true);
        act(`Create ${name}`, () => api("POST", `/v1/connect/${enc(cluster)}/connectors`, { name, config }), () => {
          form.reset();
          return refresh();
        });
        return;
      }
      const name = form.dataset.connector ?? "";
      const typed = val(form, "input");
      if (!name || typed !== name) return toast("The name typed does not match: nothing deleted", true);
      act(`Delete connector ${name}`, () => api("DELETE", `/v1/connect/${enc(cluster)}/connectors/${enc(name)}`), () => {
        form.hidden = true;
        form.reset();
        return refresh();
      });
    });
  },
  async refresh(main) {
    const cs = (await get("/v1/connect")) as J[];
    const list = main.querySelector<HTMLElement>("#k-list")!;
    if (!cs.length) {
      list.innerHTML = `<p class="empty">No Kafka Connect cluster is configured.</p>`;
      delete list.dataset.clusters;
      return;
    }
    // The forms are built once per set of clusters, so a refresh keeps what is being typed.
    const names = cs.map((c) => c.cluster as string).join("\n");
    if (list.dataset.clusters !== names) {
      list.dataset.clusters = names;
      list.innerHTML = cs
        .map(
          (c, i) => `<section aria-labelledby="k-h-${i}"><h2 id="k-h-${i}">${esc(c.cluster)}</h2><div id="k-t-${i}"></div>
        <form class="k-delete" id="k-del-${i}" data-cluster="${esc(c.cluster)}" hidden>
          <div class="field"><label for="k-confirm-${i}" id="k-del-label-${i}">Type the connector name to delete it</label><input id="k-confirm-${i}" autocomplete="off" required></div>
          <button type="submit" class="danger">Delete connector</button></form>
        <h3>New connector on ${esc(c.cluster)}</h3>
        <form class="k-create" id="k-create-${i}" data-cluster="${esc(c.cluster)}">
          ${field(`k-name-${i}`, "Name", `<input id="k-name-${i}" required autocomplete="off">`)}
          ${field(
            `k-config-${i}`,
            "Config (JSON object)",
            `<textarea id="k-config-${i}" rows="6" required spellcheck="false" placeholder='{"connector.class": "…", "tasks.max": "1", "topics": "…"}'></textarea>`,
          )}
          <button type="submit">Create connector</button></form></section>`,
        )
        .join("");
    }
    cs.forEach((c, i) => {
      const div = main.querySelector(`#k-t-${i}`)!;
      if (c.error) {
        div.innerHTML = `<p class="bad">${esc(c.error)}</p>`;
        return;
      }
      const rows = Object.entries(c.connectors ?? {}).map(([name, v]: [string, J]) => [
        esc(name),
        esc(v.status?.connector?.state),
        esc((v.status?.tasks ?? []).map((t: J) => `${t.id}: ${t.state}`).join(", ")),
        ["pause", "resume", "restart", "delete"]
          .map(
            (a) =>
              `<button type="button"${a === "delete" ? ' class="danger"' : ""} data-cluster="${esc(c.cluster)}" data-connector="${esc(name)}" data-action="${a}" data-index="${i}" aria-label="${a} ${esc(name)}">${a}</button>`,
          )
          .join(" "),
      ]);
      div.innerHTML = table(`Connectors of ${c.cluster} (${c.url})`, ["Connector", "State", "Tasks", "Actions"], rows, "no connectors");
    });
  },
};

// ------------------------------------------------------------------ Security

pages.security = {
  title: "Security",
  async render(main) {
    const s = await get("/v1/console/session");
    main.innerHTML = `<h1>Security</h1>
      <dl><dt>Authentication</dt><dd class="bad">${s.authentication === "off" ? "Off: anyone who can reach the admin, Kafka, schema registry and catalog listeners can use them." : esc(s.authentication)}</dd></dl>
      <p>Protection of this console against other web sites: every changing request carries a per-broker token and is refused unless its Host is one of the broker's names and its Origin is this console.</p>`;
  },
};

start();
