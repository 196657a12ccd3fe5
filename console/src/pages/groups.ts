import { act, api, enc, esc, field, get, J, Page, table, toast, val } from "../core";

export const groups: Page = {
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
      ).then(() => groups.refresh!(main, arg));
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
