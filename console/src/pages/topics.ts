import { act, api, bytes, enc, esc, field, get, J, Page, table, toast, val } from "../core";

export const topics: Page = {
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
    main.querySelector("#t-search")!.addEventListener("input", () => topics.refresh!(main, ""));
    main.querySelector("#t-create")!.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const configs: Record<string, string> = {};
      if (val(main, "#c-ret")) configs["retention.ms"] = val(main, "#c-ret");
      if (val(main, "#c-ice")) configs["iceberg.mode"] = val(main, "#c-ice");
      const name = val(main, "#c-name");
      act(`Create topic ${name}`, () =>
        api("POST", "/v1/topics", { name, partitions: Number(val(main, "#c-parts")), replicas: Number(val(main, "#c-rf")), configs }),
      ).then(() => topics.refresh!(main, ""));
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
