import { esc, get, Page } from "../core";

export const security: Page = {
  title: "Security",
  async render(main) {
    const s = await get("/v1/console/session");
    main.innerHTML = `<h1>Security</h1>
      <dl><dt>Authentication</dt><dd class="bad">${s.authentication === "off" ? "Off: anyone who can reach the admin, Kafka, schema registry and catalog listeners can use them." : esc(s.authentication)}</dd></dl>
      <p>Protection of this console against other web sites: every changing request carries a per-broker token and is refused unless its Host is one of the broker's names and its Origin is this console.</p>`;
  },
};
