import { bytes, enc, esc, get, J, Page, shownValue, table, when } from "../core";

/// How many data files and dead letters the table page shows (the API bounds both).
const FILES_SHOWN = 50;
const DEAD_LETTERS_SHOWN = 20;
/// Dead-letter keys and values are cut after this many bytes by the API.
const DEAD_LETTER_SHOWN_BYTES = 4096;

function snapshot(sn: J): string {
  if (!sn) return "none yet";
  const sum = sn.summary ?? {};
  const at = sn.timestamp_ms ? new Date(sn.timestamp_ms).toISOString() : "?";
  return esc(`${sn.snapshot_id} at ${at}: ${sum["added-records"] ?? "?"} records added, ${sum["total-records"] ?? "?"} in total, ${sum["total-data-files"] ?? "?"} data files`);
}

/// The last part of a data file's path (the whole path is in its title and for screen readers).
function fileName(path: string): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  return `<span title="${esc(path)}">${esc(name)}</span><span class="sr"> (${esc(path)})</span>`;
}

function filesTable(f: J): string {
  if (!f.table_exists) return `<p class="empty">The table ${esc(f.table)} does not exist yet.</p>`;
  if (f.snapshot_id == null) return `<p class="empty">The table ${esc(f.table)} has no snapshot yet.</p>`;
  const files = f.files as J[];
  const of = f.total_files != null ? `${files.length} of ${f.total_files}` : `${files.length}`;
  return table(
    `Data files of snapshot ${f.snapshot_id} (${of}, newest first)`,
    ["File", "Records", "Size", "Partition", "Added by snapshot"],
    files.map((x) => [
      fileName(x.path),
      esc(x.record_count),
      bytes(x.file_size_in_bytes),
      esc(x.partition || "-"),
      esc(x.added_snapshot_id ?? "-"),
    ]),
    "no data files",
  );
}

function deadLettersTable(d: J): string {
  if (!d.table_exists) return `<p class="empty">No dead letters: the dead-letter table ${esc(d.table)} does not exist (no record has failed to decode).</p>`;
  const rows = d.rows as J[];
  const total = d.total_records != null ? ` of ${d.total_records}` : "";
  const omitted = (d.omitted as J[] | undefined)?.length
    ? `<p class="muted">Left out to keep the read small: ${(d.omitted as J[]).map(esc).join("; ")}</p>`
    : "";
  return (
    table(
      `Newest dead letters of ${d.table} (${rows.length}${total}), newest first`,
      ["Partition", "Offset", "Time", "Key", "Value", "Reason code", "Reason"],
      rows.map((r) => [
        esc(r.partition ?? "-"),
        esc(r.offset ?? "-"),
        esc(when(r.timestamp_ms)),
        shownValue(r.key, DEAD_LETTER_SHOWN_BYTES),
        shownValue(r.value, DEAD_LETTER_SHOWN_BYTES),
        `<code>${esc(r.reason_code ?? "-")}</code>`,
        esc(r.reason ?? ""),
      ]),
      "none",
    ) + omitted
  );
}

export const iceberg: Page = {
  title: "Iceberg",
  render(main, arg) {
    main.innerHTML = arg
      ? `<p><a href="#/iceberg">← All Iceberg topics</a></p><h1>Iceberg table of ${esc(arg)}</h1><div id="i-one"></div>
        <section aria-labelledby="i-f"><h2 id="i-f">Data files</h2><p class="muted">The table's current snapshot, newest files first (at most ${FILES_SHOWN}).</p><div id="i-files"></div></section>
        <section aria-labelledby="i-d"><h2 id="i-d">Dead letters</h2><p class="muted">Records that could not be decoded, with their raw key and value, from the dead-letter table (at most ${DEAD_LETTERS_SHOWN}).</p><div id="i-dlq"></div></section>`
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
        <dt>Dead-letter records</dt><dd id="i-dlq-count">${esc(s.dlq_records ?? 0)}</dd><dt>Last error</dt><dd>${esc(s.last_error ?? "none")}</dd></dl>` +
        table("Partitions", ["Partition", "Translated up to", "High watermark", "Lag"], (s.partitions ?? []).map((p: J) => [esc(p.partition), esc(p.next_offset), esc(p.high_watermark), esc(p.lag)]));
      // Files and dead letters are read from the tables' manifests and Parquet files: asked
      // again only when a commit changed them, not on every tick. Dead letters are committed
      // before the main table's snapshot, so a new snapshot or a new count covers both.
      const box = main.querySelector<HTMLElement>("#i-files")!;
      const version = `${s.snapshot?.snapshot_id ?? ""}/${s.dlq_records ?? 0}/${s.table_exists}`;
      if (box.dataset.version === version) return;
      const [files, dlq] = await Promise.all([
        get(`/v1/iceberg/topics/${enc(arg)}/files?limit=${FILES_SHOWN}`),
        get(`/v1/iceberg/topics/${enc(arg)}/dead-letters?limit=${DEAD_LETTERS_SHOWN}`),
      ]);
      box.innerHTML = filesTable(files);
      main.querySelector("#i-dlq")!.innerHTML = deadLettersTable(dlq);
      box.dataset.version = version;
      return;
    }
    const topics = ((await get("/v1/topics")) as J[]).filter((t) => !t.internal);
    const st = await Promise.all(topics.slice(0, 100).map((t) => get(`/v1/iceberg/topics/${enc(t.name)}`).catch(() => null)));
    main.querySelector("#i-list")!.innerHTML = table(
      "Iceberg topics",
      ["Topic", "Mode", "Table", "Last snapshot", "Data files", "Lag (records)", "Dead letters"],
      st
        .filter((s) => s && s.mode && s.mode !== "disabled" && s.mode !== "off")
        .map((s: J) => [
          `<a href="#/iceberg/${enc(s.topic)}">${esc(s.topic)}</a>`,
          esc(s.mode),
          esc(s.table ?? "-") + (s.table_exists === false ? " (not created yet)" : ""),
          esc(s.snapshot?.snapshot_id ?? s.snapshot?.["snapshot-id"] ?? (s.snapshot ? "yes" : "none")),
          esc(s.snapshot?.summary?.["total-data-files"] ?? "-"),
          esc(s.lag_records ?? "-"),
          esc(s.dlq_records ?? 0),
        ]),
      "no topic has iceberg.mode set",
    );
  },
};
