// Drives the console in Debian's Chromium (playwright-core, no downloaded browser) against a
// real broker that tests/e2e/test_console.py started and filled with data. Input: the
// environment (CONSOLE_URL, CONSOLE_TEST = JSON of names, CONSOLE_SCREENSHOTS = a directory
// to save one PNG per page into, optional). Prints one JSON line of measurements; exits 1 on
// the first failed expectation.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// Evaluated through DevTools, which the console's Content-Security-Policy does not govern.
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const base = process.env.CONSOLE_URL;
const t = JSON.parse(process.env.CONSOLE_TEST);
const shots = process.env.CONSOLE_SCREENSHOTS || "";
const only = (process.env.CONSOLE_ONLY || "").split(",").filter(Boolean);
if (shots) mkdirSync(shots, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), "icestream-console-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
  ],
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
page.setDefaultTimeout(20000);
page.on("dialog", (d) => d.accept());
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// The console runs under its Content-Security-Policy: nothing of its own may be refused.
page.on("console", (m) => {
  if (m.type() === "error" && /Content Security Policy/i.test(m.text())) consoleErrors.push(m.text());
});
const results = { pages: {}, a11y: {} };

function fail(msg) {
  throw new Error(msg);
}

async function step(name, f) {
  if (only.length && !only.includes(name)) return;
  const t0 = Date.now();
  try {
    await f();
  } catch (e) {
    const file = join(tmpdir(), `icestream-console-failure-${name}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.error(`step ${name} failed: ${e.message}\n(screenshot: ${file})\n${(await page.locator("main").innerHTML().catch(() => "")).slice(0, 3000)}`);
    throw e;
  }
  results.pages[name] = { ms: Date.now() - t0 };
}

async function go(hash) {
  await page.goto(`${base}/console/#/${hash}`);
  await page.waitForSelector("main h1");
}

/// axe-core on the current page: no serious or critical violations.
async function axe(name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  results.a11y[name] = { violations: r.violations.length, serious: bad.length, ids: r.violations.map((v) => `${v.id}:${v.impact}`) };
  if (bad.length)
    fail(`accessibility (${name}): ${bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target).join(" ")}`).join("; ")}`);
}

/// A screenshot of the viewport, scrolled to `scrollTo` (a selector) if given.
async function shot(name, scrollTo) {
  if (!shots) return;
  if (scrollTo) await page.locator(scrollTo).evaluate((e) => e.scrollIntoView({ block: "start" }));
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

const text = (sel) => page.locator(sel).innerText();
async function waitText(sel, want, timeout = 20000) {
  await page.waitForFunction(
    ([s, w]) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(w)),
    [sel, want],
    { timeout },
  );
}

try {
  await step("overview", async () => {
    await page.goto(`${base}/console/`);
    await page.waitForSelector("#o-b table");
    const perf = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      const res = performance.getEntriesByType("resource").filter((r) => r.name.includes("/console/"));
      const fcp = performance.getEntriesByName("first-contentful-paint")[0];
      return {
        html_bytes: nav.encodedBodySize,
        asset_bytes: res.reduce((a, r) => a + r.encodedBodySize, 0),
        first_contentful_paint_ms: fcp ? Math.round(fcp.startTime) : null,
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      };
    });
    results.perf = perf;
    if (!(await text("#o-h")).includes("Ready")) fail("overview does not say Ready");
    await page.waitForSelector("#o-t svg", { timeout: 15000 }); // two samples of /metrics
    // Traffic through the console's own produce route shows up on the chart.
    await page.evaluate(async ([topic]) => {
      const token = document.querySelector('meta[name="csrf-token"]').content;
      for (let i = 0; i < 40; i++)
        await fetch(`/v1/topics/${encodeURIComponent(topic)}/records`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
          body: JSON.stringify({ key: `load-${i}`, value: "x".repeat(2000) }),
        });
    }, [t.load_topic]);
    await page.waitForFunction(() => /In \(produced\) [1-9]/.test(document.querySelector("#o-legend")?.textContent ?? ""), null, { timeout: 15000 });
    await axe("overview");
    await shot("overview");
  });

  await step("keyboard", async () => {
    await go("");
    // After navigation the heading has focus; going back reaches the nav and the skip link.
    if ((await page.evaluate(() => document.activeElement.tagName)) !== "H1") fail("the page heading has no focus");
    for (let i = 0; i < 20 && (await page.evaluate(() => document.activeElement.className)) !== "skip"; i++)
      await page.keyboard.press("Shift+Tab");
    if ((await page.evaluate(() => document.activeElement.className)) !== "skip") fail("Shift+Tab never reaches the skip link");
    await page.keyboard.press("Tab"); // Overview
    await page.keyboard.press("Tab"); // Topics
    if ((await page.evaluate(() => document.activeElement.textContent)) !== "Topics") fail("Tab order: skip link, Overview, Topics expected");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => location.hash === "#/topics");
    await page.waitForFunction(() => document.activeElement?.tagName === "H1");
  });

  await step("topics", async () => {
    await go("topics");
    await page.fill("#c-name", t.new_topic);
    await page.fill("#c-parts", "3");
    await page.fill("#c-ret", "86400000");
    await page.click("#t-create button[type=submit]");
    await waitText("#t-list a", t.new_topic);
    await page.fill("#t-search", t.new_topic.slice(0, 12));
    await waitText("#t-list a", t.new_topic);
    await axe("topics");
    await shot("topics");
    await page.click(`#t-list a:text-is("${t.new_topic}")`);
    await page.waitForFunction(() => document.querySelectorAll("#tp-parts tbody tr").length === 3);
    await waitText("#tp-configs td", "86400000");
    await page.fill("#s-key", "retention.ms");
    await page.fill("#s-val", "7200000");
    await page.click("#tp-set button");
    await waitText("#tp-configs td", "7200000");
    await page.fill("#a-count", "4");
    await page.click("#tp-add button");
    await page.waitForFunction(() => document.querySelectorAll("#tp-parts tbody tr").length === 4);
    await axe("topic");
    await shot("topic");
    await page.fill("#d-confirm", "not-the-name");
    await page.click("#tp-del button");
    await waitText("#toast", "does not match");
    await page.fill("#d-confirm", t.new_topic);
    await page.click("#tp-del button");
    await page.waitForFunction(() => location.hash === "#/topics");
    await page.waitForFunction((n) => ![...document.querySelectorAll("#t-list a")].some((a) => a.textContent === n), t.new_topic);
  });

  await step("messages", async () => {
    await go(`messages/${encodeURIComponent(t.avro_topic)}`);
    await page.click("#m-form button[type=submit]");
    await waitText("#m-list .tag", "AVRO");
    await waitText("#m-list pre", t.avro_marker);
    await page.fill("#p-key", "console-key");
    await page.fill("#p-value", "typed in the console");
    await page.fill("#p-headers", '{"origin":"console"}');
    await page.click("#m-produce button");
    await waitText("#m-list pre", "typed in the console"); // the end is followed live
    await waitText("#m-list td", "origin: console");
    await page.fill("#m-key", "console-key");
    await page.click("#m-form button[type=submit]");
    await page.waitForFunction(() => document.querySelectorAll("#m-list tbody tr").length === 1);
    await page.fill("#m-key", "");
    await page.click("#m-form button[type=submit]");
    await waitText("#m-list .tag", "AVRO");
    await axe("messages");
    await shot("messages");
  });

  await step("groups", async () => {
    await go("groups");
    await waitText("#g-list a", t.group);
    await axe("groups");
    await page.click(`#g-list a:text-is("${t.group}")`);
    await waitText("#g-total", String(t.group_lag));
    await waitText("#g-state", "Empty");
    await axe("group");
    await shot("group");
    // To a time before every record: the start of each partition, lag 20.
    await page.selectOption("#r-to", "timestamp");
    await page.fill("#r-ts", "0");
    await page.click("#r-go");
    await waitText("#toast", `Reset ${t.group}: done`);
    await page.waitForFunction(() => document.querySelector("#g-total").textContent.trim() === "20");
    await page.selectOption("#r-to", "end");
    await page.click("#r-go");
    await waitText("#g-total", "0");
    await page.waitForFunction(() => document.querySelector("#g-total").textContent.trim() === "0");
  });

  await step("schemas", async () => {
    await go("schemas");
    await waitText("#s-list a", t.subject);
    await axe("schemas");
    await page.click(`#s-list a:text-is("${t.subject}")`);
    await page.waitForSelector("#s-diff table");
    await waitText("#s-diff td.add", t.added_field);
    await page.click("#s-draft button[type=submit]");
    await waitText("#s-result", "Compatible");
    await page.fill("#s-text", t.draft_incompatible);
    await page.click("#s-draft button[type=submit]");
    await waitText("#s-result", "Not compatible");
    await page.fill("#s-text", t.draft_v3);
    await page.click("#s-register");
    await waitText("dl dd", "1, 2, 3");
    await page.waitForSelector("#s-diff table");
    await axe("subject");
    await shot("schemas");
  });

  await step("storage", async () => {
    await go("storage");
    await page.waitForSelector(`button[data-unmount="${t.unmount_topic}"]`);
    // An unmount the CLI ran before the page was opened is listed, from the broker.
    await page.waitForFunction(
      (n) => [...document.querySelectorAll("#st-progress tr")].some((r) => r.cells[0]?.textContent === n && r.cells[1]?.textContent === "done"),
      t.cli_unmount_topic,
    );
    await axe("storage");
    await page.click(`button[data-unmount="${t.unmount_topic}"]`);
    await page.waitForFunction(
      (n) => [...document.querySelectorAll("#st-progress tr")].some((r) => r.cells[0]?.textContent === n && r.cells[1]?.textContent === "done"),
      t.unmount_topic,
      { timeout: 60000 },
    );
    await page.waitForSelector(`button[data-mount="${t.unmount_topic}"]`, { timeout: 30000 });
    // A name Kafka refuses is caught before anything is sent, next to the field.
    const name = `input[data-mount-name="${t.unmount_topic}"]`;
    await page.fill(name, "no spaces allowed");
    await page.click(`button[data-mount="${t.unmount_topic}"]`);
    await waitText(`form[data-mount="${t.unmount_topic}"] .error`, "cannot contain ' '");
    if ((await page.getAttribute(name, "aria-invalid")) !== "true") fail("the refused name is not marked invalid");
    await axe("storage-mount");
    await shot("storage");
    // A name that is taken: the broker's refusal is shown there too, nothing is mounted.
    await page.fill(name, t.load_topic);
    await page.click(`button[data-mount="${t.unmount_topic}"]`);
    await waitText(`form[data-mount="${t.unmount_topic}"] .error`, "already exists");
    await page.fill(name, t.renamed_topic);
    await page.click(`button[data-mount="${t.unmount_topic}"]`);
    await waitText("#toast", `Mount ${t.unmount_topic} as ${t.renamed_topic}: done`);
    await page.waitForSelector(`button[data-unmount="${t.renamed_topic}"]`, { timeout: 30000 });
    if (await page.locator(`button[data-mount="${t.unmount_topic}"]`).count()) fail("the mounted topic is still listed as mountable");
    await go("topics");
    await waitText("#t-list a", t.renamed_topic);
    if (await page.locator(`#t-list a:text-is("${t.unmount_topic}")`).count()) fail("the old name is still a topic");
  });

  await step("iceberg", async () => {
    await go("iceberg");
    await waitText("#i-list a", t.iceberg_topic);
    await waitText("#i-list a", t.dlq_topic);
    if (await page.locator(`#i-list a:text-is("${t.avro_topic}")`).count()) fail("a topic without iceberg.mode is listed");
    await axe("iceberg-list");
    await page.click(`#i-list a:text-is("${t.iceberg_topic}")`);
    await waitText("#i-exists", "yes", 60000);
    await page.waitForFunction(() => !document.querySelector("#i-snap").textContent.includes("none yet"), null, { timeout: 60000 });
    await waitText("#i-snap", "records added");
    // The data files of the last snapshot: every produced record is in one of them.
    await page.waitForFunction(
      (n) => [...document.querySelectorAll("#i-files tbody tr")].reduce((a, r) => a + Number(r.cells[1].textContent), 0) === n,
      t.iceberg_records,
      { timeout: 60000 },
    );
    await waitText("#i-files td", ".parquet");
    await waitText("#i-dlq p", "does not exist");
    // A schema-mode topic with undecodable values: its dead letters, newest first.
    await go(`iceberg/${encodeURIComponent(t.dlq_topic)}`);
    await page.waitForFunction((n) => document.querySelectorAll("#i-dlq tbody tr").length === n, t.dead_letters.length, { timeout: 60000 });
    for (const d of t.dead_letters) {
      const row = await page.evaluate(
        (off) => [...document.querySelectorAll("#i-dlq tbody tr")].find((r) => r.cells[1].textContent === String(off))?.innerText ?? "",
        d.offset,
      );
      for (const want of [d.shown, d.reason_code]) if (!row.includes(want)) fail(`dead letter at offset ${d.offset}: '${want}' not in '${row}'`);
    }
    const offsets = await page.evaluate(() => [...document.querySelectorAll("#i-dlq tbody tr")].map((r) => Number(r.cells[1].textContent)));
    if (offsets.join() !== [...offsets].sort((a, b) => b - a).join()) fail(`dead letters not newest first: ${offsets}`);
    await page.waitForFunction(() => document.querySelectorAll("#i-files tbody tr").length > 0, null, { timeout: 60000 });
    await axe("iceberg");
    await shot("iceberg", "#i-f");
  });

  await step("connectors", async () => {
    await go("connect");
    await waitText("#k-list td", "RUNNING");
    await waitText("#k-list td", "0: RUNNING");
    await axe("connectors");
    await shot("connectors");
    await page.click('button[aria-label="pause s3-sink"]');
    await waitText("#k-list td", "PAUSED");
    await page.click('button[aria-label="resume s3-sink"]');
    await waitText("#k-list td", "RUNNING");
    await page.click('button[aria-label="restart s3-sink"]');
    await waitText("#toast", "restart s3-sink: done");
    // A second connector from the form: it runs, then goes through the typed confirmation.
    await page.fill("#k-name-0", "file-sink-2");
    await page.fill(
      "#k-config-0",
      JSON.stringify({ "connector.class": "compat.LineFiles$Sink", "tasks.max": 1, topics: t.connect_topic, file: t.connect_file }),
    );
    await page.click("#k-create-0 button[type=submit]");
    await waitText("#toast", "Create file-sink-2: done");
    const row = (name, want) =>
      page.waitForFunction(
        ([n, w]) => [...document.querySelectorAll("#k-list tr")].some((r) => r.cells[0]?.textContent === n && r.textContent.includes(w)),
        [name, want],
        { timeout: 60000 },
      );
    await row("file-sink-2", "0: RUNNING");
    await axe("connectors-create");
    await page.click('button[aria-label="delete file-sink-2"]');
    await page.fill("#k-confirm-0", "s3-sink");
    await page.click("#k-del-0 button[type=submit]");
    await waitText("#toast", "does not match");
    await page.fill("#k-confirm-0", "file-sink-2");
    await page.click("#k-del-0 button[type=submit]");
    await waitText("#toast", "Delete connector file-sink-2: done");
    await page.waitForFunction(() => ![...document.querySelectorAll("#k-list tr")].some((r) => r.cells[0]?.textContent === "file-sink-2"), null, {
      timeout: 30000,
    });
    await row("s3-sink", "RUNNING");
  });

  await step("security", async () => {
    await go("security");
    await waitText("main dd", "Off");
    await axe("security");
    await shot("security");
  });

  await step("cross-site", async () => {
    // A page of another origin (http://localhost:port is not the console's http://127.0.0.1:port)
    // posting to the broker, by fetch and by a classic form: both refused by the broker.
    const other = base.replace("127.0.0.1", "localhost");
    await page.goto(`${other}/v1/status/ready`);
    await page.evaluate(async ([u, name]) => {
      await fetch(`${u}/v1/topics`, { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: JSON.stringify({ name }) }).catch(() => {});
    }, [base, t.evil_topic]);
    await page.evaluate(([u, name]) => {
      const f = document.createElement("form");
      f.method = "POST";
      f.action = `${u}/v1/topics`;
      f.enctype = "text/plain";
      const i = document.createElement("input");
      i.name = `{"name":"${name}","x":"`;
      i.value = `"}`;
      f.append(i);
      document.body.append(f);
      f.submit();
    }, [base, t.evil_topic]);
    await page.waitForURL(`${base}/v1/topics`);
    const answer = await page.locator("body").innerText();
    if (!answer.includes("refused: cross-site request")) fail(`the form POST was answered: ${answer}`);
    await go("");
    const topics = await page.evaluate(async () => (await (await fetch("/v1/topics")).json()).map((x) => x.name));
    if (topics.includes(t.evil_topic)) fail("a cross-site POST created a topic");
  });

  if (consoleErrors.length) fail(`page errors: ${consoleErrors.join("; ")}`);
  console.log(JSON.stringify(results));
} catch (e) {
  console.error(String(e.stack || e));
  process.exitCode = 1;
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
