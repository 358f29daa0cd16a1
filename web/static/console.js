// The telemetry console: alerts, graphs, traces and logs from /console/api/*.
// Everything a client or a lab wrote (names, attributes, log fields) is set as text.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const projector = params.get("view") === "projector";
  const status = document.getElementById("console-status");
  const COLORS = ["#FFD700", "#39FF14", "#FF1493", "#5ec8ff", "#ff8c1a", "#c9a0ff", "#f5f5f5", "#ff5555"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      // Through the CSSOM: the pages' CSP refuses style attributes.
      else if (key === "style") {
        for (const rule of value.split(";")) {
          const at = rule.indexOf(":");
          if (at > 0) node.style.setProperty(rule.slice(0, at).trim(), rule.slice(at + 1).trim());
        }
      }
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || body.error || `${response.status} from ${path}`);
    return body;
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (seconds < 90) return `${seconds} s ago`;
    return `${Math.round(seconds / 60)} min ago`;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function number(value) {
    if (value === null || value === undefined) return "";
    if (Math.abs(value) >= 100 || Number.isInteger(value)) return String(Math.round(value));
    return value.toPrecision(3);
  }

  // ---- alerts ----
  const alertList = document.getElementById("alert-list");
  async function refreshAlerts() {
    const view = await getJson("/console/api/alerts");
    const order = { firing: 0, pending: 1, inactive: 2 };
    const rules = [...view.rules].sort((a, b) => order[a.state] - order[b.state]);
    const rows = rules.map((rule) => {
      const alert = rule.alerts[0];
      const since = alert ? ` since ${ago(alert.fired_since_ms || alert.active_since_ms)}` : "";
      return el("article", { class: `alert-rule state-${rule.state}`, "data-alert": rule.name, "data-state": rule.state },
        el("span", { class: "alert-state" }, rule.state),
        el("h3", {}, rule.name, rule.severity ? el("small", {}, ` ${rule.severity}`) : null),
        el("p", { class: "alert-summary" }, alert ? alert.summary : rule.summary),
        el("p", { class: "alert-meta" }, alert && alert.value !== null ? `value ${number(alert.value)}${since}` : since.trim() || `for ${rule.for_s} s`),
        rule.error ? el("p", { class: "console-error" }, rule.error) : null,
        alert && !projector ? el("details", {}, el("summary", {}, "what to look at"), el("p", {}, alert.description), el("pre", {}, rule.expr)) : null);
    });
    alertList.replaceChildren(...(rows.length ? rows : [el("p", {}, "This lab has no alert rules.")]));
    const firing = rules.filter((r) => r.state === "firing").length;
    status.textContent = view.evaluated_at_ms ? `${firing} firing · evaluated ${clock(view.evaluated_at_ms)}` : "not recording";
  }

  // ---- graphs ----
  const graphList = document.getElementById("graph-list");
  function drawGraph(graph) {
    const width = 600, height = 220, left = 54, bottom = 22;
    const points = graph.lines.flatMap((l) => l.points);
    // The window grows with the history, from a minute up to the 15 kept: a lab
    // started before the talk shows its first seconds across the graph, not in a corner.
    const now = Math.floor(Date.now() / 1000);
    const first = Math.min(now, ...points.map((p) => p[0]));
    const from = Math.max(now - 15 * 60, Math.min(first, now - 60));
    const span = Math.round((now - from) / 60);
    const top = Math.max(1e-9, ...points.map((p) => p[1]));
    const max = top * 1.1;
    const x = (t) => left + ((t - from) / (now - from)) * (width - left - 4);
    const y = (v) => (height - bottom) - (v / max) * (height - bottom - 6);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", graph.title);
    const add = (tag, attrs, text) => {
      const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    add("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" });
    add("line", { x1: left, y1: 4, x2: left, y2: height - bottom, class: "axis" });
    add("text", { x: left - 6, y: 14, "text-anchor": "end", class: "tick" }, number(top));
    add("text", { x: left - 6, y: height - bottom, "text-anchor": "end", class: "tick" }, "0");
    add("text", { x: left, y: height - 4, class: "tick" }, `−${span} min`);
    add("text", { x: width - 4, y: height - 4, "text-anchor": "end", class: "tick" }, "now");
    graph.lines.forEach((line, i) => {
      if (!line.points.length) return;
      const path = line.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      add("polyline", { points: path, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": projector ? 4 : 2.5 });
    });
    const legend = el("ul", { class: "legend" }, ...graph.lines.map((line, i) => {
      const last = line.points.length ? line.points[line.points.length - 1][1] : null;
      return el("li", { "data-legend": line.legend, "data-last": last === null ? "" : String(last) },
        el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }),
        `${line.legend || "value"}: ${number(last)} ${graph.unit}`);
    }));
    return el("figure", { class: "graph", "data-graph": graph.id },
      el("figcaption", {}, graph.title), svg,
      graph.lines.length ? legend : el("p", { class: "legend" }, "no samples yet"));
  }

  async function refreshGraphs() {
    const graph = params.get("graph");
    const query = projector ? `?step=2${graph ? `&id=${encodeURIComponent(graph)}` : ""}` : "?step=5";
    const view = await getJson(`/console/api/graphs${query}`);
    const shown = projector && !graph ? view.graphs.slice(view.graphs.length > 2 ? 2 : 0, 3) : view.graphs;
    graphList.replaceChildren(...shown.map(drawGraph));
  }

  // ---- traces ----
  const traceList = document.getElementById("trace-list");
  const traceDetail = document.getElementById("trace-detail");
  const traceError = document.getElementById("trace-error");
  const traceForm = document.getElementById("trace-filter");
  for (const name of ["route", "status", "min_ms", "attr"]) {
    if (params.has(name)) traceForm.elements[name].value = params.get(name);
  }

  async function refreshTraces() {
    const query = new URLSearchParams();
    for (const name of ["route", "status", "min_ms", "attr"]) {
      const value = traceForm.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    query.set("limit", "50");
    let view;
    try {
      view = await getJson(`/console/api/traces?${query}`);
      traceError.hidden = true;
    } catch (error) {
      traceError.textContent = error.message;
      traceError.hidden = false;
      return;
    }
    const head = el("tr", {}, ...["time", "trace", "service", "status", "ms", "spans"].map((h) => el("th", {}, h)));
    const rows = view.traces.map((t) => el("tr", { class: t.error ? "trace-row failed" : "trace-row", "data-trace": t.trace_id, tabindex: "0",
      onclick: () => showTrace(t.trace_id), onkeydown: (e) => { if (e.key === "Enter") showTrace(t.trace_id); } },
      el("td", {}, clock(t.start_us / 1000)), el("td", {}, t.name), el("td", {}, t.service),
      el("td", {}, t.status === null ? "" : t.status), el("td", {}, t.duration_ms.toFixed(1)), el("td", {}, t.spans)));
    const caption = el("caption", {}, `${view.traces.length} shown of ${view.kept} traces kept`);
    traceList.replaceChildren(el("table", { class: "trace-table" }, caption, el("thead", {}, head), el("tbody", {}, ...rows)));
    traceList.dataset.query = query.toString(); // what the rows answer, for a test to wait on
  }

  async function showTrace(id) {
    const view = await getJson(`/console/api/traces/${id}`);
    const spans = view.trace.spans;
    const start = Math.min(...spans.map((s) => s.start_us));
    const end = Math.max(...spans.map((s) => s.start_us + s.duration_us));
    const total = Math.max(1, end - start);
    const depth = new Map();
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const depthOf = (s) => {
      if (depth.has(s.span_id)) return depth.get(s.span_id);
      const parent = s.parent_id && byId.get(s.parent_id);
      const d = parent ? depthOf(parent) + 1 : 0;
      depth.set(s.span_id, d);
      return d;
    };
    const rows = spans.map((s) => {
      const attrs = Object.entries(s.attributes).map(([k, v]) => el("li", { "data-key": k }, el("code", {}, k), ` = ${typeof v === "string" ? v : JSON.stringify(v)}`));
      const events = s.events.map((e) => el("li", { class: "span-event" }, `event ${e.name} `, el("code", {}, JSON.stringify(e.attributes))));
      return el("div", { class: s.error !== null ? "span failed" : "span", "data-span": s.name, style: `--depth:${depthOf(s)}` },
        el("div", { class: "span-head" }, el("span", { class: "span-name" }, `${s.service} · ${s.name}`), el("span", { class: "span-ms" }, `${(s.duration_us / 1000).toFixed(2)} ms`)),
        el("div", { class: "span-track" }, el("span", { class: "span-bar", style: `left:${((s.start_us - start) / total) * 100}%;width:${Math.max(0.5, (s.duration_us / total) * 100)}%` })),
        s.error ? el("p", { class: "console-error" }, s.error) : null, // a failure may carry no message
        el("ul", { class: "span-attrs" }, ...attrs, ...events));
    });
    const jaeger = view.jaeger ? el("a", { href: view.jaeger, target: "_blank", rel: "noopener" }, "open in Jaeger") : null;
    traceDetail.replaceChildren(el("h3", {}, "Trace ", el("code", { id: "trace-id" }, view.trace.trace_id), " ", jaeger,
      el("button", { class: "link-button", type: "button", onclick: () => traceDetail.replaceChildren() }, " close")), ...rows);
    traceDetail.scrollIntoView({ block: "nearest" });
  }

  traceForm.addEventListener("submit", (event) => { event.preventDefault(); refreshTraces(); });

  // ---- logs ----
  const logList = document.getElementById("log-list");
  const logForm = document.getElementById("log-filter");
  async function refreshLogs() {
    const query = new URLSearchParams({ limit: "100" });
    for (const name of ["level", "event"]) {
      const value = logForm.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    const view = await getJson(`/console/api/logs?${query}`);
    const rows = view.logs.map((log) => el("tr", { class: `log-${log.level.toLowerCase()}`, "data-event": log.event },
      el("td", {}, log.at.slice(11, 19)), el("td", {}, log.level), el("td", {}, log.event),
      el("td", {}, Object.entries(log.fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")),
      el("td", {}, log.trace_id ? el("button", { class: "link-button", type: "button", onclick: () => showTrace(log.trace_id) }, "trace") : "")));
    logList.replaceChildren(el("table", { class: "log-table" }, el("tbody", {}, ...rows)));
  }
  logForm.addEventListener("submit", (event) => { event.preventDefault(); refreshLogs(); });

  function every(ms, task) {
    const run = () => task().catch((error) => { status.textContent = error.message; });
    run();
    setInterval(run, ms);
  }

  if (projector) {
    document.body.classList.add("console-projector");
    for (const id of ["traces", "logs"]) document.getElementById(id).hidden = true;
  }
  every(2000, refreshAlerts);
  every(projector ? 2000 : 5000, refreshGraphs);
  if (!projector) {
    every(5000, () => (traceDetail.childElementCount ? Promise.resolve() : refreshTraces()));
    every(5000, refreshLogs);
  }
})();
