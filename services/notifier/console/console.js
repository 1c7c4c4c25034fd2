// livetriage incident console: vanilla ES module, no build step, nothing from a CDN.
// Everything shown comes from the /v1 API with the key kept in sessionStorage. Text from the
// API is only ever set as textContent (stream ids and reasons come from outside).

const KEY = "livetriage.key";
const REFRESH_MS = 5000;
const SEVERITIES = ["SEV1", "SEV2", "SEV3", "SEV4"];
const STATUSES = ["triggered", "acknowledged", "resolved"];
const CATEGORIES = ["child_safety", "violent_extremism", "self_harm", "violence", "hate", "harassment",
  "nudity", "dangerous_acts", "animal_harm", "spam", "other"];
const SORTS = [["-detected_at", "Newest first"], ["detected_at", "Oldest first"], ["severity", "Severity (SEV1 first)"]];
const MATCHER_FIELDS = ["category", "severity", "region", "stream_id", "kind", "team"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (sel) => document.querySelector(sel);
let me = null;          // {name, scopes} of the key
let timer = null;       // the live refresh of the current view
let current = null;     // {name, refresh()} of the view on screen

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, typeof v === "number" ? String(Math.round(v * 10) / 10) : v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function urgencyTag() {
  return h("span", { class: "urgency-low", title: "low urgency: recorded, nobody paged", text: "low" });
}

function badge(severity) {
  return h("span", { class: `badge sev-${String(severity).toLowerCase()}`, text: severity });
}

function statusTag(status) {
  return h("span", { class: `status st-${status}`, "data-status": status, text: status });
}

// A span of whole seconds, as a person reads it: 42s, 3m 07s, 5h 02m, 3d.
function duration(sec) {
  if (sec < 60) return `${sec}s`;
  const min = Math.floor(sec / 60); sec %= 60;
  if (min < 60) return `${min}m ${String(sec).padStart(2, "0")}s`;
  const hr = Math.floor(min / 60);
  if (hr < 48) return `${hr}h ${String(min % 60).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d`;
}

function ago(iso) {
  if (!iso) return "—";
  return `${duration(Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000)))} ago`;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

// Detection delay on event time: from the surge's first report to the report that decided it.
function delay(inc) {
  if (!inc.detected_event_at || !inc.started_at) return "—";
  return duration(Math.max(0, Math.round((Date.parse(inc.detected_event_at) - Date.parse(inc.started_at)) / 1000)));
}

function timeEl(iso, relative = false) {
  return h("time", { datetime: iso || "", title: iso || "", text: relative ? ago(iso) : when(iso) });
}

function flash(message, kind = "info") {
  const el = $("#flash");
  el.className = `flash ${kind}`;
  el.textContent = message;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const key = sessionStorage.getItem(KEY);
  if (!key) { showLogin(); throw new ApiError(401, { title: "Unauthorized" }); }
  const headers = { Authorization: `Bearer ${key}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin("The key was refused (401): it is unknown or revoked. Log in again.");
    throw new ApiError(401, { title: "Unauthorized" });
  }
  if (!res.ok) {
    let problem = {};
    try { problem = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, problem);
  }
  return res.status === 204 ? null : res.json();
}

const canWrite = () => Boolean(me && me.scopes.includes("write"));

// What went wrong with an action, in words for 3 a.m.
function actionError(verb, err) {
  if (err.status === 403) return `This key cannot ${verb}: ${err.message}.`;
  if (err.status === 409) return `Cannot ${verb}: ${err.message}.`;
  return `Could not ${verb} (${err.status || "network"}): ${err.message}`;
}

// ---------------------------------------------------------------- login and routing

function showLogin(message = "") {
  stopTimer();
  me = null;
  $("#nav").hidden = true;
  $("#session").hidden = true;
  $("#view").hidden = true;
  $("#view").replaceChildren();
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#key").value = "";
  $("#key").focus();
}

async function login(event) {
  event.preventDefault();
  const key = $("#key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  try {
    await start();
  } catch (err) {
    if (err.status !== 401) $("#login-error").textContent = `Could not log in: ${err.message}`;
  }
}

async function start() {
  me = await api("/v1/whoami");
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#session").hidden = false;
  $("#view").hidden = false;
  $("#who").textContent = `${me.name} · ${canWrite() ? "read/write" : "read only"}`;
  $("#who").dataset.scopes = me.scopes.join(",");
  await route();
}

function stopTimer() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function startTimer() {
  stopTimer();
  timer = setInterval(() => {
    if (!$("#pause").checked && current && !document.hidden) current.refresh().catch(reportError);
  }, REFRESH_MS);
}

function reportError(err) {
  if (err.status === 401) return;  // already back at the login
  flash(`Refresh failed (${err.status || "network"}): ${err.message}`, "error");
}

function stamp() {
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
}

async function route() {
  if (!me) return;
  stopTimer();
  flash("");
  const hash = location.hash || "#/incidents";
  const [path, query = ""] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.toggleAttribute("aria-current", a.dataset.nav === (parts[0] === "incident" ? "incidents" : parts[0]));
  }
  const view = $("#view");
  view.replaceChildren();
  if (parts[0] === "incident" && parts[1]) current = incidentView(view, parts[1]);
  else if (parts[0] === "oncall") current = oncallView(view);
  else if (parts[0] === "silences") current = silencesView(view);
  else current = listView(view, params);
  try {
    await current.refresh();
  } catch (err) {
    reportError(err);
  }
  startTimer();
}

// ---------------------------------------------------------------- incident list

function select(name, label, options, value) {
  const id = `f-${name}`;
  return h("div", { class: "field" },
    h("label", { for: id, text: label }),
    h("select", { id, name },
      h("option", { value: "", text: "any" }),
      options.map(([v, t]) => h("option", { value: v, selected: v === value, text: t }))));
}

function listView(root, params) {
  const filters = Object.fromEntries(["status", "severity", "urgency", "category", "stream_id", "region", "sort"]
    .map((k) => [k, params.get(k) || ""]));
  const cursors = [];        // cursors of the pages before this one, for "Previous"
  let cursor = params.get("cursor") || null;

  const form = h("form", { class: "filters", "aria-label": "Filter incidents" },
    select("status", "Status", STATUSES.map((v) => [v, v]), filters.status),
    select("severity", "Severity", SEVERITIES.map((v) => [v, v]), filters.severity),
    select("urgency", "Urgency", [["high", "high (paged)"], ["low", "low (recorded)"]], filters.urgency),
    select("category", "Category", CATEGORIES.map((v) => [v, v.replace("_", " ")]), filters.category),
    h("div", { class: "field" }, h("label", { for: "f-stream_id", text: "Stream" }),
      h("input", { id: "f-stream_id", name: "stream_id", value: filters.stream_id, maxlength: "128", spellcheck: "false" })),
    h("div", { class: "field narrow" }, h("label", { for: "f-region", text: "Region" }),
      h("input", { id: "f-region", name: "region", value: filters.region, maxlength: "2", pattern: "[A-Za-z]{2}",
        placeholder: "DE", spellcheck: "false" })),
    h("div", { class: "field" }, h("label", { for: "f-sort", text: "Sort" }),
      h("select", { id: "f-sort", name: "sort" },
        SORTS.map(([v, t]) => h("option", { value: v, selected: v === (filters.sort || "-detected_at"), text: t })))),
    h("div", { class: "field buttons" },
      h("button", { type: "submit", class: "primary", text: "Apply" }),
      h("button", { type: "reset", class: "ghost", text: "Clear" })));

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      const val = k === "region" ? String(v).trim().toUpperCase() : String(v).trim();
      if (val && !(k === "sort" && val === "-detected_at")) q.set(k, val);
    }
    location.hash = `#/incidents${q.toString() ? `?${q}` : ""}`;
  });
  form.addEventListener("reset", (e) => { e.preventDefault(); location.hash = "#/incidents"; });

  const tbody = h("tbody");
  const table = h("table", { class: "incidents" },
    h("caption", { class: "sr-only", text: "Incidents" }),
    h("colgroup", {}, ["sev", "status", "cat", "stream", "region", "team", "reason", "age", "delay", "count"]
      .map((c) => h("col", { class: `c-${c}` }))),
    h("thead", {}, h("tr", {}, ["Severity", "Status", "Category", "Stream", "Region", "Team", "Reason",
      "Detected", "Delay", "Reports"].map((t) => h("th", { scope: "col", text: t })))),
    tbody);
  const prev = h("button", { type: "button", class: "ghost", text: "← Previous", disabled: true });
  const next = h("button", { type: "button", class: "ghost", text: "Next →", disabled: true });
  const pageInfo = h("span", { class: "page-info" });
  let nextCursor = null;

  prev.addEventListener("click", () => { cursor = cursors.pop() ?? null; refresh().catch(reportError); });
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(cursor); cursor = nextCursor; refresh().catch(reportError);
  });

  root.append(h("h1", { text: "Incidents" }), form,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, pageInfo, next));

  async function refresh() {
    const q = new URLSearchParams({ limit: "25" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, k === "region" ? v.toUpperCase() : v);
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/v1/incidents?${q}`);
    nextCursor = page.next_cursor;
    const rows = page.items.map((i) => {
      const link = h("a", { href: `#/incident/${i.id}`, text: i.reason });
      return h("tr", { "data-id": i.id, "data-severity": i.severity, "data-status": i.status,
                       "data-urgency": i.urgency, class: i.urgency === "low" ? "low-urgency" : null },
        h("td", {}, badge(i.severity), i.urgency === "low" ? urgencyTag() : null),
        h("td", {}, statusTag(i.status)),
        h("td", { text: i.category.replace("_", " ") }),
        h("td", { class: "mono", text: i.stream_id || "—" }),
        h("td", { text: i.region || "—" }),
        h("td", { text: i.team || "—" }),
        h("td", { class: "reason" }, link),
        h("td", { class: "num" }, timeEl(i.detected_at, true)),
        h("td", { class: "num", title: "from the surge's first report to the one that decided it (event time)",
                  text: delay(i) }),
        h("td", { class: "num", text: i.report_count }));
    });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "10", class: "empty", text: "No incidents match." })));
    tbody.replaceChildren(...rows);
    prev.disabled = cursors.length === 0;
    next.disabled = !nextCursor;
    pageInfo.textContent = `page ${cursors.length + 1}`;
    stamp();
  }
  return { name: "incidents", refresh };
}

// ---------------------------------------------------------------- the rate chart

// The report rate per minute (a line), the learned baseline (a line) with a band up to the level
// it took to open the spike, and the spike itself (started_at .. resolved_at or now) shaded.
export function rateChart(rate, incident) {
  const W = 760, H = 260, L = 52, R = 16, T = 16, B = 34;
  const pts = rate.points.map((p) => ({ t: Date.parse(p.at), v: p.per_minute }));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", preserveAspectRatio: "none" });
  if (!pts.length) {
    svg.setAttribute("aria-label", "No rate series for this incident");
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" },
      "No rate series (raised by a single critical report, or before charts were recorded)"));
    return svg;
  }
  const hopMs = (rate.hop_s || 10) * 1000;
  const t0 = pts[0].t, t1 = pts[pts.length - 1].t + hopMs;
  const base = rate.baseline_per_minute ?? 0, upper = rate.upper_per_minute ?? 0;
  const peak = Math.max(...pts.map((p) => p.v));
  const yMax = niceMax(Math.max(peak, upper, base, 1) * 1.1);
  const x = (t) => L + ((Math.min(Math.max(t, t0), t1) - t0) / Math.max(t1 - t0, 1)) * (W - L - R);
  const y = (v) => T + (1 - v / yMax) * (H - T - B);

  svg.append(s("title", {}, "Report rate per minute"));
  svg.setAttribute("aria-label", `Report rate: peak ${fmt(peak)} per minute; baseline ${fmt(base)}, ` +
    `opening level ${fmt(upper)} per minute`);

  const spikeStart = Date.parse(incident.started_at);
  const spikeEnd = incident.resolved_at ? Date.parse(incident.resolved_at) : Date.now();
  if (spikeEnd > t0 && spikeStart < t1) {
    svg.append(s("rect", { class: "chart-spike", x: x(spikeStart), y: T, width: Math.max(x(spikeEnd) - x(spikeStart), 1),
      height: H - T - B }, s("title", {}, `spike: ${when(incident.started_at)} – ${incident.resolved_at ? when(incident.resolved_at) : "now"}`)));
  }
  for (const v of ticks(yMax)) {
    svg.append(s("line", { class: "chart-grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      s("text", { class: "chart-label", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.append(s("rect", { class: "chart-band", x: L, width: W - L - R, y: y(upper), height: Math.max(y(base) - y(upper), 0) },
    s("title", {}, `normal band: baseline ${fmt(base)} up to the opening level ${fmt(upper)} per minute`)));
  svg.append(s("line", { class: "chart-baseline", x1: L, x2: W - R, y1: y(base), y2: y(base) }));
  svg.append(s("line", { class: "chart-upper", x1: L, x2: W - R, y1: y(upper), y2: y(upper) }));
  const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p.t + hopMs / 2).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  svg.append(s("path", { class: "chart-rate", d, "data-points": pts.length }));
  const top = pts.reduce((a, b) => (b.v > a.v ? b : a));
  svg.append(s("circle", { class: "chart-peak", cx: x(top.t + hopMs / 2), cy: y(top.v), r: 3.5 },
    s("title", {}, `peak ${fmt(top.v)}/min at ${clock(new Date(top.t).toISOString())}`)));
  svg.append(s("line", { class: "chart-axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
    svg.append(s("text", { class: "chart-label", x: x(t), y: H - B + 18, "text-anchor": anchor },
      clock(new Date(t).toISOString())));
  }
  return svg;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function ticks(max) { return [0, max / 4, max / 2, (3 * max) / 4, max]; }

function fmt(v) { return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0); }

function chartLegend() {
  const item = (cls, text) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text);
  return h("ul", { class: "legend" }, item("sw-rate", "reports per minute"),
    item("sw-baseline", "learned baseline"), item("sw-band", "up to the opening level"),
    item("sw-spike", "the spike (start to resolve/now)"));
}

// ---------------------------------------------------------------- one incident

function describe(entry) {
  const d = entry.detail || {};
  const bits = [];
  for (const [k, v] of Object.entries(d)) {
    if (v === null || v === undefined || v === "") continue;
    bits.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  return bits.join(" · ");
}

function incidentView(root, id) {
  const header = h("div", { class: "incident-head" });
  const chartBox = h("figure", { class: "chart-box" });
  const severityList = h("ol", { class: "plain" });
  const factorList = h("ul", { class: "factors" });
  const samples = h("ul", { class: "samples mono" });
  const timeline = h("ol", { class: "timeline" });
  const notifications = h("tbody");
  const actionMsg = h("p", { class: "action-msg", role: "status", "aria-live": "polite" });
  const note = h("textarea", { id: "note", rows: "2", maxlength: "4000", placeholder: "What you see, what you did" });
  const ack = h("button", { type: "button", class: "primary", "data-action": "acknowledge", text: "Acknowledge" });
  const resolve = h("button", { type: "button", class: "danger", "data-action": "resolve", text: "Resolve" });
  const addNote = h("button", { type: "button", "data-action": "note", text: "Add note" });
  const readOnly = h("p", { class: "hint", id: "readonly-hint" });
  let incident = null;

  async function act(action, verb) {
    const text = note.value.trim();
    let path = `/v1/incidents/${id}/${action}`, body = text ? { note: text } : {};
    if (action === "note") {
      if (!text) { actionMsg.className = "action-msg error"; actionMsg.textContent = "Write a note first."; note.focus(); return; }
      path = `/v1/incidents/${id}/notes`; body = { text };
    }
    for (const b of [ack, resolve, addNote]) b.disabled = true;
    actionMsg.className = "action-msg"; actionMsg.textContent = `${verb}…`;
    try {
      await api(path, { method: "POST", body });
      note.value = "";
      await refresh();
      actionMsg.className = "action-msg ok";
      actionMsg.textContent = action === "note" ? "Note added." : `Incident ${incident.status}.`;
    } catch (err) {
      if (err.status === 401) return;
      actionMsg.className = "action-msg error";
      actionMsg.textContent = actionError(verb, err);
      if (err.status === 403) { me.scopes = me.scopes.filter((sc) => sc === "read"); }
      setButtons();
    }
  }
  ack.addEventListener("click", () => act("acknowledge", "acknowledge this incident"));
  resolve.addEventListener("click", () => act("resolve", "resolve this incident"));
  addNote.addEventListener("click", () => act("note", "add a note"));

  function setButtons() {
    const w = canWrite();
    const status = incident ? incident.status : "resolved";
    ack.disabled = !w || status !== "triggered";
    resolve.disabled = !w || status === "resolved";
    addNote.disabled = !w;
    note.disabled = !w;
    readOnly.textContent = w ? "" : "This key is read only: it cannot acknowledge, resolve or add notes.";
  }

  const section = (title, ...content) => h("section", { class: "panel" }, h("h2", { text: title }), ...content);
  root.append(
    h("p", { class: "back" }, h("a", { href: "#/incidents", text: "← All incidents" })),
    header,
    h("div", { class: "grid" },
      h("div", { class: "col-main" },
        section("Report rate", chartBox, chartLegend()),
        section("Actions",
          h("label", { for: "note", text: "Note (optional for acknowledge and resolve)" }), note,
          h("div", { class: "buttons" }, ack, resolve, addNote), readOnly, actionMsg),
        section("Timeline", timeline),
        section("Notifications", h("div", { class: "table-wrap" }, h("table", { class: "notifications" },
          h("thead", {}, h("tr", {}, ["Channel", "Kind", "State", "Attempts", "Created", "Sent / next try", "Last error"]
            .map((t) => h("th", { scope: "col", text: t })))), notifications)))),
      h("div", { class: "col-side" },
        section("Why", factorList),
        section("Severity history", severityList),
        section("Sample reports", samples))));

  async function refresh() {
    const [inc, rate, sev, tl, notes] = await Promise.all([
      api(`/v1/incidents/${id}`), api(`/v1/incidents/${id}/rate`), api(`/v1/incidents/${id}/severity`),
      api(`/v1/incidents/${id}/timeline`), api(`/v1/incidents/${id}/notifications`)]);
    incident = inc;
    document.title = `${inc.severity} ${inc.status} · ${inc.category} · livetriage`;
    const meta = (label, value) => h("div", {}, h("dt", { text: label }), h("dd", {}, value));
    header.replaceChildren(
      h("h1", {}, badge(inc.severity), " ", h("span", { class: "reason-title", text: inc.reason })),
      h("dl", { class: "meta" },
        meta("Status", statusTag(inc.status)),
        meta("Urgency", inc.urgency === "low" ? "low: recorded, nobody paged" : "high: paged"),
        meta("Category", inc.category.replace("_", " ")),
        meta("Stream", h("span", { class: "mono", text: inc.stream_id || "—" })),
        meta("Region", inc.region || "—"),
        meta("Team", inc.team || "—"),
        meta("Assignee", inc.assignee || "—"),
        meta("Detected", h("span", {}, timeEl(inc.detected_at, true))),
        meta("Started", timeEl(inc.started_at)),
        meta("Detection delay", delay(inc)),
        meta("Reports", String(inc.report_count)),
        meta("Score", inc.score.toFixed(2)),
        inc.acknowledged_by ? meta("Acknowledged", `${inc.acknowledged_by}, ${ago(inc.acknowledged_at)}`) : null,
        inc.resolved_at ? meta("Resolved", `${inc.resolved_by || inc.resolved_how || "—"}, ${ago(inc.resolved_at)}`) : null));

    chartBox.replaceChildren(rateChart(rate, inc));

    const maxC = Math.max(...inc.factors.map((f) => Math.abs(f.contribution)), 1e-9);
    factorList.replaceChildren(...(inc.factors.length ? inc.factors.map((f) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = `${Math.round((Math.abs(f.contribution) / maxC) * 100)}%`;
      return h("li", {},
        h("div", { class: "factor-row" }, h("span", { class: "factor-name", text: f.name }),
          h("span", { class: "factor-value mono", text: typeof f.value === "number" ? fmt(f.value) : f.value }),
          h("span", { class: "factor-contrib mono", text: `+${f.contribution.toFixed(2)}` })),
        h("div", { class: "bar-track", "aria-hidden": "true" }, bar));
    }) : [h("li", { class: "empty", text: "No factors recorded." })]));

    severityList.replaceChildren(...sev.map((c) => h("li", {}, badge(c.severity), " ", timeEl(c.at))));
    samples.replaceChildren(...(inc.sample_report_ids.length
      ? inc.sample_report_ids.map((r) => h("li", { text: r })) : [h("li", { class: "empty", text: "none" })]));

    timeline.replaceChildren(...tl.map((e) => h("li", { "data-kind": e.kind },
      h("div", { class: "tl-head" }, h("strong", { text: e.kind.replaceAll("_", " ") }), " ",
        h("span", { class: "muted", text: `by ${e.actor}` }), " ", timeEl(e.at)),
      describe(e) ? h("div", { class: "tl-detail", text: describe(e) }) : null)));

    notifications.replaceChildren(...(notes.length ? notes.map((n) => h("tr", { "data-status": n.status },
      h("td", { text: n.channel }), h("td", { text: n.kind }),
      h("td", {}, h("span", { class: `delivery dl-${n.status}`, text: n.status })),
      h("td", { class: "num", text: n.attempts }), h("td", {}, timeEl(n.created_at)),
      h("td", {}, n.sent_at ? timeEl(n.sent_at) : n.status === "pending" ? timeEl(n.next_attempt_at) : "—"),
      h("td", { class: "err", text: n.last_error || "" })))
      : [h("tr", {}, h("td", { colspan: "7", class: "empty", text: "Nobody was paged (no channels, silenced, or not yet)." }))]));
    setButtons();
    stamp();
  }
  return { name: "incident", refresh };
}

// ---------------------------------------------------------------- on call

function oncallView(root) {
  const tbody = h("tbody");
  const at = h("p", { class: "muted" });
  root.append(h("h1", { text: "On call now" }), at, h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Team", "On call", "Next hand-off"].map((t) => h("th", { scope: "col", text: t })))),
    tbody)));
  async function refresh() {
    const oc = await api("/v1/oncall");
    at.textContent = `as of ${when(oc.at)}`;
    tbody.replaceChildren(...(oc.teams.length ? oc.teams.map((t) => h("tr", {},
      h("td", { text: t.team }), h("td", { class: "strong", text: t.person || "nobody (schedule not started)" }),
      h("td", {}, t.next_handoff_at ? timeEl(t.next_handoff_at) : "—")))
      : [h("tr", {}, h("td", { colspan: "3", class: "empty", text: "No schedules in the routing file." }))]));
    stamp();
  }
  return { name: "oncall", refresh };
}

// ---------------------------------------------------------------- silences

function silencesView(root) {
  const tbody = h("tbody");
  const msg = h("p", { class: "action-msg", role: "status", "aria-live": "polite" });
  const inputs = Object.fromEntries(MATCHER_FIELDS.map((f) => [f,
    h("input", { id: `m-${f}`, name: f, placeholder: f === "category" ? "hate, spam" : f === "region" ? "DE" : "",
      spellcheck: "false" })]));
  const duration = h("select", { id: "s-duration" }, [["30", "30 minutes"], ["60", "1 hour"], ["120", "2 hours"],
    ["240", "4 hours"], ["480", "8 hours"], ["1440", "1 day"], ["10080", "7 days"]]
    .map(([v, t]) => h("option", { value: v, selected: v === "120", text: t })));
  const comment = h("input", { id: "s-comment", required: true, maxlength: "1000", placeholder: "why (e.g. known raid)" });
  const create = h("button", { type: "submit", class: "primary", text: "Create silence" });
  const form = h("form", { class: "silence-form", "aria-label": "Create a silence" },
    h("fieldset", {}, h("legend", { text: "Matchers (comma-separated values; a field left empty matches anything)" }),
      h("div", { class: "matchers" }, MATCHER_FIELDS.map((f) => h("div", { class: "field" },
        h("label", { for: `m-${f}`, text: f.replace("_", " ") }), inputs[f])))),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "s-duration", text: "Duration" }), duration),
      h("div", { class: "field grow" }, h("label", { for: "s-comment", text: "Comment" }), comment),
      h("div", { class: "field buttons" }, create)), msg);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const matchers = {};
    for (const f of MATCHER_FIELDS) {
      const vals = inputs[f].value.split(",").map((v) => v.trim()).filter(Boolean);
      if (vals.length) matchers[f] = f === "region" ? vals.map((v) => v.toUpperCase()) : vals;
    }
    if (!Object.keys(matchers).length) { msg.className = "action-msg error"; msg.textContent = "Name at least one matcher."; return; }
    const ends = new Date(Date.now() + Number(duration.value) * 60000).toISOString();
    try {
      await api("/v1/silences", { method: "POST", body: { matchers, ends_at: ends, created_by: me.name,
        comment: comment.value.trim() } });
      form.reset();
      msg.className = "action-msg ok"; msg.textContent = "Silence created.";
      await refresh();
    } catch (err) {
      if (err.status === 401) return;
      msg.className = "action-msg error"; msg.textContent = actionError("create silences", err);
    }
  });

  root.append(h("h1", { text: "Silences" }), form, h("div", { class: "table-wrap" }, h("table", { class: "silences" },
    h("thead", {}, h("tr", {}, ["State", "Matchers", "Starts", "Ends", "By", "Comment", ""]
      .map((t) => h("th", { scope: "col", text: t })))), tbody)));

  async function expire(sil) {
    try {
      await api(`/v1/silences/${sil.id}`, { method: "DELETE" });
      msg.className = "action-msg ok"; msg.textContent = "Silence expired.";
      await refresh();
    } catch (err) {
      if (err.status === 401) return;
      msg.className = "action-msg error"; msg.textContent = actionError("expire silences", err);
    }
  }

  async function refresh() {
    const list = await api("/v1/silences");
    const w = canWrite();
    for (const el of [...Object.values(inputs), duration, comment, create]) el.disabled = !w;
    if (!w && !msg.textContent) { msg.className = "action-msg"; msg.textContent = "This key is read only: it cannot create or expire silences."; }
    tbody.replaceChildren(...(list.length ? list.map((sil) => h("tr", { "data-state": sil.state },
      h("td", {}, h("span", { class: `silence-state ss-${sil.state}`, text: sil.state })),
      h("td", { class: "mono", text: Object.entries(sil.matchers).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v.join(",")}`).join(" ") }),
      h("td", {}, timeEl(sil.starts_at)), h("td", {}, timeEl(sil.expired_at || sil.ends_at)),
      h("td", { text: sil.created_by }), h("td", { text: sil.comment }),
      h("td", {}, sil.state === "expired" ? "" : h("button", { type: "button", class: "ghost", disabled: !w,
        onclick: () => expire(sil), text: "Expire" }))))
      : [h("tr", {}, h("td", { colspan: "7", class: "empty", text: "No silences." }))]));
    stamp();
  }
  return { name: "silences", refresh };
}

// ---------------------------------------------------------------- start

$("#login-form").addEventListener("submit", login);
$("#logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(); });
$("#pause").addEventListener("change", (e) => {
  $("#updated").classList.toggle("paused", e.target.checked);
  if (!e.target.checked && current) current.refresh().catch(reportError);
});
window.addEventListener("hashchange", () => route());

if (sessionStorage.getItem(KEY)) start().catch((err) => { if (err.status !== 401) showLogin(`Could not log in: ${err.message}`); });
else showLogin();
