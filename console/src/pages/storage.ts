import { act, api, bytes, enc, esc, get, J, Page, table, topicNameError, when } from "../core";

// The mountable list is rebuilt only when it changes, so a new name being typed, and the
// error shown under it, survive the live refresh.
function mountableKey(m: J[]): string {
  return m.map((x) => `${x.topic}|${x.partitions}|${x.records}|${x.error ?? ""}`).join("\n");
}

function mountForm(x: J, i: number): string {
  const t = esc(x.topic);
  return `<form class="st-mount" data-mount="${t}" novalidate>
    <div class="field"><label for="mnt-${i}">Mount as (empty: ${t})</label>
    <input id="mnt-${i}" data-mount-name="${t}" autocomplete="off" spellcheck="false" maxlength="249" placeholder="${t}" aria-describedby="mnt-err-${i}"></div>
    <button type="submit" data-mount="${t}" aria-label="Mount ${t}">Mount</button>
    <p class="error" id="mnt-err-${i}" role="alert"></p></form>`;
}

export const storage: Page = {
  title: "Storage",
  render(main) {
    main.innerHTML = `<h1>Storage</h1>
      <section aria-labelledby="st-t"><h2 id="st-t">Topics</h2><p class="muted">Unmounting uploads a topic entirely to the object store and removes it from the cluster; mounting brings it back, under its old name or a new one.</p><div id="st-topics"></div></section>
      <section aria-labelledby="st-u"><h2 id="st-u">Unmounts</h2><p class="muted">Every unmount on this broker, whoever started it (this page, another browser, the CLI or the admin API): running ones, and those that ended in the last hour.</p><div id="st-progress"></div></section>
      <section aria-labelledby="st-m"><h2 id="st-m">Mountable topics</h2><div id="st-mountable"></div></section>`;
    const refresh = () => storage.refresh!(main, "");
    main.addEventListener("click", (ev) => {
      const b = (ev.target as HTMLElement).closest("button[data-unmount]") as HTMLButtonElement | null;
      if (!b) return;
      const t = b.dataset.unmount!;
      if (!confirm(`Unmount topic ${t}? Producers and consumers lose it until it is mounted again.`)) return;
      act(`Unmount ${t}`, () => api("POST", "/v1/topics/unmount", { topic: t }), refresh);
    });
    main.addEventListener("submit", async (ev) => {
      const form = (ev.target as HTMLElement).closest("form[data-mount]") as HTMLFormElement | null;
      if (!form) return;
      ev.preventDefault();
      const t = form.dataset.mount!;
      const input = form.querySelector("input")!;
      const err = form.querySelector(".error")!;
      const name = input.value.trim();
      const why = name ? topicNameError(name) : null;
      err.textContent = why ?? "";
      if (why) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
        return;
      }
      input.removeAttribute("aria-invalid");
      const rename = name && name !== t ? name : "";
      const failed = await act(
        rename ? `Mount ${t} as ${rename}` : `Mount ${t}`,
        () => api("POST", "/v1/topics/mount", rename ? { topic: t, new_name: rename } : { topic: t }),
        refresh,
      );
      // The broker's refusal (the name is taken, the manifest is damaged...) stays next to
      // the field as well as in the notice, which fades.
      if (failed && form.isConnected) {
        err.textContent = failed.message;
        input.setAttribute("aria-invalid", "true");
      }
    });
  },
  async refresh(main) {
    const topics = ((await get("/v1/topics")) as J[]).filter((t) => !t.internal);
    const [st, unmounts, m] = await Promise.all([
      Promise.all(topics.slice(0, 100).map((t) => get(`/v1/topics/${enc(t.name)}/storage`).catch(() => null))),
      get("/v1/topics/unmount/status") as Promise<J[]>,
      get("/v1/topics/mountable") as Promise<J[]>,
    ]);
    main.querySelector("#st-topics")!.innerHTML = table(
      "Topics and where their data is",
      ["Topic", "Tiering", "Local", "Remote", "Action"],
      st
        .filter((s) => s)
        .map((s: J) => {
          const sum = (k: string) => (s.partitions as J[]).reduce((a, p) => a + (p[k] ?? 0), 0);
          return [
            `<a href="#/topics/${enc(s.topic)}">${esc(s.topic)}</a>`,
            s.remote_storage ? "on" : "off",
            bytes(sum("local_bytes")),
            bytes(sum("remote_bytes")),
            `<button type="button" data-unmount="${esc(s.topic)}" aria-label="Unmount ${esc(s.topic)}">Unmount</button>`,
          ];
        }),
      "no topics",
    );
    main.querySelector("#st-progress")!.innerHTML = table(
      "Unmounts on this broker",
      ["Topic", "State", "Progress", "Uploaded", "Started", "Ended", "Error"],
      unmounts.map((s) => {
        const pct = s.total_records ? Math.round((100 * s.uploaded_records) / s.total_records) : s.state === "done" ? 100 : 0;
        return [
          esc(s.topic),
          `<span class="${s.state === "failed" ? "bad" : s.state === "done" ? "ok" : ""}">${esc(s.state)}</span>`,
          `<progress max="100" value="${pct}" aria-label="Unmount of ${esc(s.topic)}">${pct}%</progress> ${pct}% (${esc(s.uploaded_records)} of ${esc(s.total_records)} records)`,
          bytes(s.remote_bytes),
          esc(when(s.started_ms)),
          esc(when(s.finished_ms)),
          esc(s.error ?? ""),
        ];
      }),
      "no unmount is running or ended in the last hour",
    );
    const box = main.querySelector<HTMLElement>("#st-mountable")!;
    const key = mountableKey(m);
    if (box.dataset.key === key) return;
    // Names typed into rows that stay are kept, and so is the focus.
    const typed = new Map<string, string>();
    box.querySelectorAll<HTMLInputElement>("input[data-mount-name]").forEach((i) => typed.set(i.dataset.mountName!, i.value));
    const focused = (document.activeElement as HTMLInputElement | null)?.dataset?.mountName;
    box.dataset.key = key;
    box.innerHTML = table(
      "Mountable topics",
      ["Topic", "Partitions", "Records", "Unmounted", "Mount"],
      m.map((x, i) => [
        esc(x.topic),
        esc(x.error ? `error: ${x.error}` : x.partitions),
        esc(x.records ?? "-"),
        esc(when(x.unmounted_at_ms)),
        x.error ? "" : mountForm(x, i),
      ]),
      "nothing to mount",
    );
    box.querySelectorAll<HTMLInputElement>("input[data-mount-name]").forEach((i) => {
      i.value = typed.get(i.dataset.mountName!) ?? "";
      if (i.dataset.mountName === focused) i.focus();
    });
  },
};
