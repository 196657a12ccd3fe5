// Shared by every page: the HTTP API client, HTML helpers, toasts and the Page type. The
// router (main.ts) owns navigation; pages re-render through rerender() and ask whether they
// are still shown through currentGeneration(), so no page module imports the router.

export type J = any; // answers of the documented HTTP APIs (docs/console.md)

const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
export const REFRESH_MS = 3000;

export interface Page {
  title: string;
  render(main: HTMLElement, arg: string): void | Promise<void>;
  /// Live part, called now and every REFRESH_MS while the page is shown.
  refresh?(main: HTMLElement, arg: string): Promise<void>;
}

let generation = 0;
/// Bumped by the router on every navigation.
export function nextGeneration(): number {
  return ++generation;
}
export function currentGeneration(): number {
  return generation;
}
/// Renders the current page again from scratch (as navigating to it does).
export function rerender() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

export async function api(method: string, path: string, body?: unknown): Promise<J> {
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
export const get = (p: string) => api("GET", p);
export const enc = encodeURIComponent;

export function esc(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

export function h(tag: string, attrs: Record<string, string> = {}, html = ""): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.innerHTML = html;
  return e;
}

export function bytes(n: number | null | undefined): string {
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

export function table(caption: string, cols: string[], rows: string[][], empty = "None."): string {
  if (!rows.length) return `<p class="empty">${esc(caption)}: ${esc(empty)}</p>`;
  return `<table><caption>${esc(caption)}</caption><thead><tr>${cols
    .map((c) => `<th scope="col">${esc(c)}</th>`)
    .join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

let toastTimer = 0;
export function toast(msg: string, bad = false) {
  const t = document.getElementById("toast")!;
  t.textContent = msg;
  t.className = bad ? "bad show" : "show";
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (t.className = ""), 6000);
}

/// Runs a mutating action from a form, reporting the outcome; answers the error, if any, so
/// a form can also show it next to the field it concerns.
export async function act(label: string, f: () => Promise<unknown>, after?: () => unknown): Promise<Error | null> {
  const gen = generation;
  try {
    await f();
    toast(`${label}: done`);
  } catch (e) {
    toast(`${label}: ${(e as Error).message}`, true);
    return e as Error;
  }
  // The user may have left the page while the request ran: only the page that asked is
  // refreshed (its elements are gone otherwise), and a failed refresh waits for the next tick.
  if (gen !== generation) return null;
  try {
    await after?.();
  } catch {
    /* the next live refresh shows the state */
  }
  return null;
}

/// Why `name` is not a valid Kafka topic name (the broker's own rules), or null.
export function topicNameError(name: string): string | null {
  if (!name.length || name.length > 249) return `A topic name has 1 to 249 characters (this one has ${name.length}).`;
  if (name === "." || name === "..") return "A topic name cannot be '.' or '..'.";
  const bad = [...name].find((c) => !/[A-Za-z0-9._-]/.test(c));
  if (bad !== undefined) return `A topic name cannot contain '${bad}': use ASCII letters, digits, '.', '_' and '-'.`;
  if (name === "__consumer_offsets" || name === "_schemas") return `'${name}' is the name of an internal topic.`;
  return null;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/// A time in ms since the epoch as local `YYYY-MM-DD HH:MM:SS`, or "-".
export function when(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(Number(ms))) return "-";
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function field(id: string, label: string, input: string): string {
  return `<div class="field"><label for="${id}">${esc(label)}</label>${input}</div>`;
}

export function val(root: ParentNode, sel: string): string {
  return (root.querySelector(sel) as HTMLInputElement | null)?.value.trim() ?? "";
}

/// A key or value as the records and dead-letter APIs answer it: decoded through its schema,
/// text, or hex.
/// `shown`: how much of a long value the API answers (the rest is cut).
export function shownValue(v: J, shown = 64 * 1024): string {
  if (v == null) return `<span class="muted">null</span>`;
  const cut = v.truncated ? ` <span class="muted">(first ${bytes(shown)} of ${bytes(v.size)})</span>` : "";
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
