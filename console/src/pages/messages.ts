import { act, api, bytes, enc, esc, field, get, J, Page, shownValue, table, toast, val } from "../core";

export const messages: Page = {
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
