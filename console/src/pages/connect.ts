import { act, api, enc, esc, field, get, J, Page, table, toast, val } from "../core";

export const connect: Page = {
  title: "Connectors",
  render(main) {
    main.innerHTML = `<h1>Connectors</h1><p class="muted">Kafka Connect clusters given to the broker with <code>serve --connect-url name=URL</code>.</p><div id="k-list"></div>`;
    const refresh = () => connect.refresh!(main, "");
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
