import { act, api, enc, esc, field, get, Page, rerender, table, val } from "../core";

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

export const schemas: Page = {
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
      act("Set compatibility", () => api("PUT", `${SR}/config/${enc(arg)}`, { compatibility: val(main, "#s-level") }), rerender);
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
      act(`Register ${arg}`, () => api("POST", `${SR}/subjects/${enc(arg)}/versions`, draft()), rerender),
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
