// The console page: renders the state it was served with, then follows /console/events
// (a `snapshot` event, then `diff` events). Plain DOM, text only (never innerHTML): server
// names are tame, but errors and stderr lines are whatever a child wrote.
"use strict";
(function () {
  const initial = JSON.parse(document.getElementById("initial").textContent);
  const table = document.getElementById("servers");
  const pageAdmin = table.dataset.admin === "true";
  const opened = new Map(); // "server/section" -> whether the user left that <details> open
  let state = initial;
  let base = initial.base_url;
  let startedAt = Date.now() - initial.uptime_seconds * 1000;
  let retryDelay = 1000;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function snippet(server) {
    const url = base + server.route;
    const entry = { type: "http", url: url };
    const lines = ["URL:    " + url];
    if (server.auth !== "none") {
      entry.headers = { Authorization: "Bearer <TOKEN>" };
      const key = server.api_key ? " --api-key <KEY>" : "";
      lines.push("Header: Authorization: Bearer <TOKEN>");
      lines.push("        (<TOKEN>: mcp-tornado token " + server.name + key + ")");
    }
    lines.push("", "mcp.json:", JSON.stringify({ mcpServers: { [server.name]: entry } }, null, 2));
    return lines.join("\n");
  }

  function copyButton(text) {
    const button = el("button", { type: "button", class: "copy" }, "copy");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "copied";
      } catch (error) {
        button.textContent = "select and copy by hand";
      }
      setTimeout(() => (button.textContent = "copy"), 1500);
    });
    return button;
  }

  function details(server, section, summary, body, openByDefault) {
    const key = server.name + "/" + section;
    const node = el("details", { class: section }, el("summary", {}, summary), body);
    node.open = opened.has(key) ? opened.get(key) : openByDefault;
    node.addEventListener("toggle", () => opened.set(key, node.open));
    return node;
  }

  function row(server) {
    const down = server.state === "restarting" || server.state === "crashed";
    const cells = [
      el("td", { class: "name" }, server.name, server.title ? el("div", { class: "title" }, server.title) : null),
      el("td", {}, el("code", {}, server.route)),
      el("td", { class: "kind" }, server.kind),
      el("td", { class: "state state-" + server.state }, server.state),
      el("td", { class: "sessions" }, server.sessions),
    ];
    const body = el("tbody", { "data-server": server.name }, el("tr", {}, ...cells));
    if (!state.admin) return body;
    const tools = server.tools || [];
    cells.push(el("td", { class: "tools", title: tools.join(", ") }, tools.length ? tools.join(", ") : "-"));
    cells.push(el("td", { class: "restarts" }, server.restarts || 0));
    cells.push(el("td", { class: "error" }, server.last_error || ""));
    body.firstChild.replaceChildren(...cells);
    const extra = el("td", { colspan: "8" });
    if (server.stderr && server.stderr.length) {
      const lines = el("pre", { class: "stderr-lines" }, server.stderr.join("\n"));
      extra.append(details(server, "stderr", "stderr (last " + server.stderr.length + " lines)", lines, down));
    }
    const text = snippet(server);
    extra.append(details(server, "snippet", "client snippet", el("div", {}, el("pre", {}, text), copyButton(text)), false));
    body.append(el("tr", { class: "extra" }, extra));
    return body;
  }

  function renderGateway() {
    const gateway = state.gateway;
    document.getElementById("version").textContent = gateway.version;
    const status = document.getElementById("status");
    status.textContent = gateway.status;
    status.className = "status-" + gateway.status;
    document.getElementById("worker").textContent = gateway.worker.id;
    document.getElementById("expired").hidden = !(pageAdmin && !state.admin);
    const logout = document.getElementById("logout");
    if (logout) logout.hidden = !state.admin;
    document.getElementById("problems").hidden = !gateway.problems;
    document.getElementById("problem-count").textContent = "Definitions with problems: " + gateway.problems;
    document.getElementById("problems-public").hidden = state.admin;
    const failing = (gateway.failing || []).map((item) => el("li", {}, el("code", {}, item.problem)));
    document.getElementById("failing").replaceChildren(...failing);
  }

  // Only the servers named are redrawn, so a snippet being selected elsewhere stays selected.
  function renderServers(names) {
    for (const name of names) {
      const old = Array.from(table.tBodies).find((node) => node.dataset.server === name);
      const server = state.servers[name];
      if (!server) {
        if (old) old.remove();
        continue;
      }
      const fresh = row(server);
      if (old) {
        old.replaceWith(fresh);
        continue;
      }
      const next = Array.from(table.tBodies).find((node) => node.dataset.server > name);
      table.insertBefore(fresh, next || null);
    }
  }

  function render() {
    const names = state.admin
      ? ["server", "route", "kind", "state", "sessions", "tools", "restarts", "last error"]
      : ["server", "route", "kind", "state", "sessions"];
    document.getElementById("columns").replaceChildren(...names.map((name) => el("th", {}, name)));
    Array.from(table.tBodies).forEach((node) => node.remove());
    renderServers(Object.keys(state.servers).sort());
    renderGateway();
  }

  function apply(changes) {
    if (changes.gateway) state.gateway = changes.gateway;
    for (const [name, entry] of Object.entries(changes.servers || {})) {
      if (entry === null) delete state.servers[name];
      else state.servers[name] = entry;
    }
    renderServers(Object.keys(changes.servers || {}));
    renderGateway();
  }

  function live(on) {
    const badge = document.getElementById("live");
    badge.hidden = false;
    badge.textContent = on ? "live" : "reconnecting";
    badge.className = on ? "live" : "live off";
  }

  function connect() {
    const source = new EventSource("/console/events");
    source.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      base = data.base_url;
      startedAt = Date.now() - data.uptime_seconds * 1000;
      state = data;
      retryDelay = 1000;
      live(true);
      render();
    });
    source.addEventListener("diff", (event) => {
      apply(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      live(false);
      if (source.readyState === EventSource.CLOSED) {
        // Refused (503 when too many consoles are open): EventSource gives up, so we come back.
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    });
  }

  setInterval(() => {
    document.getElementById("uptime").textContent = ((Date.now() - startedAt) / 1000).toFixed(0);
  }, 1000);
  render();
  connect();
})();
