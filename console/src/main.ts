// Icestream web console: plain TypeScript, no framework. Each page renders its static parts
// (headings, forms) once and refreshes its live parts (tables, charts) every few seconds
// without reloading, so forms keep their input and focus. This file is the router; each page
// is a module of pages/, and core.ts holds what they share.
import "./style.css";
import { esc, h, nextGeneration, currentGeneration, Page, REFRESH_MS } from "./core";
import { overview } from "./pages/overview";
import { topics } from "./pages/topics";
import { messages } from "./pages/messages";
import { groups } from "./pages/groups";
import { schemas } from "./pages/schemas";
import { storage } from "./pages/storage";
import { iceberg } from "./pages/iceberg";
import { connect } from "./pages/connect";
import { security } from "./pages/security";

const pages: Record<string, Page> = { "": overview, topics, messages, groups, schemas, storage, iceberg, connect, security };
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

async function route() {
  const [name = "", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const page = pages[name] ?? pages[""];
  const gen = nextGeneration();
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
      if (gen !== currentGeneration() || document.hidden) return;
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

start();
