// The dashboard: a client of the HTTP API (docs/http-api.md), same origin, no build step.
// Pages: `/` (jobs, live; the submit form) and `/jobs/{id}` (the DAG, live; details; map).
"use strict";

const app = document.getElementById("app");
const live = document.getElementById("live");
let stopPage = () => {};

// ---------- API ----------

function apiKey() { return localStorage.getItem("tessera.key") || ""; }

// The role of the key in use, from the API's `Tessera-Key-Role` header (none: no auth, or not
// asked yet): a read-only key sees the actions it may not take disabled.
let keyRole = null;
const readOnly = () => keyRole === "read-only";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.headers.get("tessera-key-role")) keyRole = r.headers.get("tessera-key-role");
  if (r.status === 403) keyRole = "read-only";
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (r.status === 401) askForKey();
  if (!r.ok) {
    const e = new Error((body && body.detail) || `HTTP ${r.status}`);
    e.status = r.status; e.problem = body;
    throw e;
  }
  return { status: r.status, body };
}

function askForKey() {
  const form = document.getElementById("key-form");
  form.hidden = false;
  form.onsubmit = e => {
    e.preventDefault();
    localStorage.setItem("tessera.key", document.getElementById("key-input").value.trim());
    form.hidden = true;
    route();
  };
}

// A live stream: SSE without a key (EventSource cannot send one), else polling.
function follow(url, onEvent, { poll } = {}) {
  let closed = false, source = null, timer = null;
  if (!apiKey()) {
    source = new EventSource(url);
    source.onopen = () => live.classList.add("on");
    source.onerror = () => live.classList.remove("on");
    source.onmessage = e => onEvent("message", e);
    for (const name of ["job_created", "job_status", "job_progress", "job_started", "task_started",
      "progress_update", "task_completed", "task_failed", "task_cancelled", "task_skipped",
      "tasks_ended", "job_completed"]) {
      source.addEventListener(name, e => onEvent(name, e));
    }
  } else if (poll) {
    const tick = async () => {
      if (closed) return;
      try { await poll(); live.classList.add("on"); } catch { live.classList.remove("on"); }
      timer = setTimeout(tick, 1000);
    };
    tick();
  }
  return () => { closed = true; if (source) source.close(); if (timer) clearTimeout(timer); live.classList.remove("on"); };
}

// Run `f` at most every `ms`, the last call always honoured.
function throttle(f, ms) {
  let last = 0, pending = null;
  return () => {
    const now = performance.now();
    if (pending) return;
    const wait = Math.max(0, last + ms - now);
    pending = setTimeout(() => { pending = null; last = performance.now(); f(); }, wait);
  };
}

// ---------- helpers ----------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const time = ms => (ms ? new Date(ms).toLocaleString() : "—");
const statusBadge = s => h("span", { class: `badge status-${s}`, "data-status": s }, s);

const TERMINAL = ["SUCCEEDED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"];

// How far a job got, 0..1, from its view (record + task counts + progress), or null when
// unknown (a list item carries no counts). A running job: the API's progress (running
// tasks' fractions included). A finished one: its tasks that ran to an end (succeeded,
// failed or skipped) out of all, so a job cancelled or stopped by a failure shows where it
// stopped, not 100 %; a succeeded job is complete.
function jobProgress(v) {
  if (v.status === "SUCCEEDED") return 1;
  if (!v.tasks) return null;
  if (!TERMINAL.includes(v.status)) return v.progress || 0;
  const c = v.tasks, total = Object.values(c).reduce((s, n) => s + n, 0);
  return total ? ((c.SUCCEEDED || 0) + (c.FAILED || 0) + (c.SKIPPED || 0)) / total : 0;
}

// The job's progress bar, its fill coloured by the job's status.
function progressBar(v) {
  const p = jobProgress(v);
  if (p === null) {
    return h("div", { class: "progress unknown", role: "progressbar", "data-status": v.status, title: "counting…" },
      h("div", { class: "fill", style: "width:100%" }), h("span", {}, "…"));
  }
  const pct = Math.floor(p * 100 + 1e-9);
  const title = v.tasks ? Object.entries(v.tasks).map(([s, c]) => `${s.toLowerCase()} ${c}`).join(", ") : `${pct}%`;
  return h("div", { class: `progress status-${v.status}`, role: "progressbar", "aria-valuenow": pct, "data-status": v.status, title },
    h("div", { class: "fill", style: `width:${pct}%` }), h("span", {}, `${pct}%`));
}

function readOnlyTitle(title) { return readOnly() ? "this API key is read-only" : title; }

function link(href, text) {
  return h("a", { href, "data-link": true }, text);
}

function problemText(e) {
  return e.problem && e.problem.code ? `${e.problem.code}: ${e.problem.detail}` : e.message;
}

let schemaCache = null;
async function openapi() {
  if (!schemaCache) schemaCache = (await api("/openapi.json")).body;
  return schemaCache;
}

// ---------- jobs list ----------

const PAGE_SIZE = 20;

// The list sorts as the API does: newest first, then by ID.
const sortsBefore = (a, b) => a.created_at > b.created_at || (a.created_at === b.created_at && a.id < b.id);

async function jobsPage() {
  const doc = await openapi();
  const statuses = doc.components.schemas.Job.properties.status.enum;
  const types = (await api("/api/job-types")).body.items;
  // The filters live in the URL (`/?status=FAILED&job_type=hello_world`): a filtered view can
  // be linked and reloaded.
  const params = new URLSearchParams(location.search);
  const filter = { status: params.get("status") || "", job_type: params.get("job_type") || "" };
  const unknown = [];
  if (filter.status && !statuses.includes(filter.status)) unknown.push(`status ${JSON.stringify(filter.status)}`);
  if (filter.job_type && !types.some(t => t.job_type === filter.job_type)) unknown.push(`job type ${JSON.stringify(filter.job_type)}`);
  const cursors = [null];
  let page = 0;

  const statusSel = h("select", { id: "filter-status", onchange: () => reset() },
    h("option", { value: "" }, "any status"), statuses.map(s => h("option", { value: s, selected: s === filter.status }, s)));
  const typeSel = h("select", { id: "filter-type", onchange: () => reset() },
    h("option", { value: "" }, "any type"), types.map(t => h("option", { value: t.job_type, selected: t.job_type === filter.job_type }, t.job_type)));
  const tbody = h("tbody");
  const prev = h("button", { id: "prev", onclick: () => { page -= 1; load(); } }, "← Newer");
  const next = h("button", { id: "next", onclick: () => { page += 1; load(); } }, "Older →");
  app.replaceChildren(
    h("section", {},
      h("h1", {}, "Jobs"),
      h("div", { class: "filters" }, statusSel, typeSel,
        unknown.length ? h("span", { class: "notice", id: "filter-notice" }, `Not a filter: ${unknown.join(", ")} (ignored)`) : null),
      h("table", { class: "jobs", id: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Progress", "Tasks", "Created", "Finished"].map(c => h("th", {}, c)))),
        tbody),
      h("div", { class: "pager" }, prev, next)),
    h("section", { id: "submit" }, h("h2", {}, "Submit a job"), await submitForm(types)));

  function reset() { page = 0; cursors.length = 1; syncUrl(); load(); }

  function syncUrl() {
    const q = new URLSearchParams();
    if (statusSel.value) q.set("status", statusSel.value);
    if (typeSel.value) q.set("job_type", typeSel.value);
    const url = `/${q.toString() ? `?${q}` : ""}${location.hash}`;
    if (url !== location.pathname + location.search + location.hash) history.replaceState(history.state, "", url);
  }

  // The rows shown (records or views, newest first) and the latest view of each job seen
  // (from the stream or asked for): a list item carries no task counts.
  let shown = [];
  const views = new Map();
  const latest = r => { const v = views.get(r.id); return v && v.updated_at >= r.updated_at ? v : r; };

  function row(v) {
    return h("tr", { "data-id": v.id },
      h("td", {}, link(`/jobs/${v.id}`, v.id.slice(0, 12))),
      h("td", {}, v.job_type), h("td", {}, statusBadge(v.status)),
      h("td", {}, progressBar(v)),
      h("td", {}, v.planned_tasks), h("td", {}, time(v.created_at)), h("td", {}, time(v.finished_at)));
  }

  function draw() { tbody.replaceChildren(...shown.map(r => row(latest(r)))); }

  let loads = 0;
  async function load() {
    const mine = ++loads;
    const q = new URLSearchParams({ limit: PAGE_SIZE });
    if (statusSel.value) q.set("status", statusSel.value);
    if (typeSel.value) q.set("job_type", typeSel.value);
    if (cursors[page]) q.set("cursor", cursors[page]);
    const body = (await api(`/api/jobs?${q}`)).body;
    if (mine !== loads) return; // a newer load is under way
    cursors[page + 1] = body.next_cursor;
    prev.disabled = page === 0;
    next.disabled = !body.next_cursor;
    shown = body.items.slice(0, PAGE_SIZE);
    draw();
    // Counts for the rows that need them: running jobs, and finished ones not seen since
    // they last changed (a succeeded job is complete without them).
    await Promise.all(shown.filter(r => {
      const v = views.get(r.id);
      return r.status !== "SUCCEEDED" && !(TERMINAL.includes(r.status) && v && v.updated_at >= r.updated_at);
    }).map(r => refreshRow(r.id)));
  }

  async function refreshRow(id) {
    try { update((await api(`/api/jobs/${id}`)).body); } catch { /* shown on the next event */ }
  }

  function matches(v) {
    return (!statusSel.value || v.status === statusSel.value) && (!typeSel.value || v.job_type === typeSel.value);
  }

  // A job's view from the stream (`job_created` replays every watched job at connect) or
  // from a GET: its row is redrawn in place; a job that belongs on this page and is not on it
  // (a new one), or one that left the filter, makes the page load again from the API, which
  // keeps the order and the page size.
  const reload = throttle(() => load().catch(() => {}), 300);
  function update(v) {
    const known = views.get(v.id);
    if (known && known.updated_at > v.updated_at) return;
    views.set(v.id, v);
    const i = shown.findIndex(r => r.id === v.id);
    if (i >= 0) {
      const old = tbody.querySelector(`tr[data-id="${v.id}"]`);
      if (old) old.replaceWith(row(latest(shown[i])));
      if (!matches(v)) reload();
      return;
    }
    if (page !== 0 || !matches(v)) return;
    const last = shown[shown.length - 1];
    if (shown.length >= PAGE_SIZE && last && sortsBefore(last, v)) return; // on a later page
    reload();
  }

  syncUrl();
  await load();
  const stop = follow("/api/events", (name, e) => {
    if (["job_created", "job_status", "job_progress"].includes(name)) update(JSON.parse(e.data));
  }, { poll: load });
  if (location.hash === "#submit") document.getElementById("submit").scrollIntoView();
  return stop;
}

// ---------- the submit form, from each job type's JSON Schema ----------

function fieldFor(name, schema, required) {
  const type = Array.isArray(schema.type) ? schema.type.find(t => t !== "null") : schema.type;
  const id = `param-${name}`;
  let input;
  if (schema.enum) {
    input = h("select", { id, name }, (required ? [] : [h("option", { value: "" }, "(default)")]),
      schema.enum.filter(v => v !== null).map(v => h("option", { value: v, selected: v === schema.default }, v)));
  } else if (type === "boolean") {
    input = h("input", { id, name, type: "checkbox", checked: schema.default === true });
  } else if (type === "integer" || type === "number") {
    input = h("input", { id, name, type: "number", step: type === "integer" ? 1 : "any", placeholder: schema.default ?? "" });
  } else if (type === "array") {
    input = h("textarea", { id, name, rows: 3, placeholder: "one per line" });
  } else {
    input = h("input", { id, name, type: "text", placeholder: schema.default ?? "" });
  }
  input.dataset.type = type || "string";
  return h("div", { class: "field", "data-field": name },
    h("label", { for: id }, name, required ? " *" : ""), input,
    schema.description ? h("small", { class: "muted" }, schema.description) : null,
    h("div", { class: "error", "data-error-for": name }));
}

function readField(input) {
  const v = input.type === "checkbox" ? input.checked : input.value.trim();
  if (input.type !== "checkbox" && v === "") return undefined;
  switch (input.dataset.type) {
    case "integer": case "number": return Number(v);
    case "array": return v.split("\n").map(s => s.trim()).filter(Boolean);
    default: return v;
  }
}

async function submitForm(types) {
  const typeSel = h("select", { id: "submit-type" }, types.map(t => h("option", { value: t.job_type }, t.job_type)));
  const fields = h("div", { class: "fields" });
  const formError = h("div", { class: "error", id: "submit-error" });
  const policy = h("select", { id: "submit-policy" }, h("option", { value: "" }, "(type's default)"),
    h("option", { value: "fail_fast" }, "fail_fast"), h("option", { value: "continue" }, "continue"));
  const description = h("p", { class: "muted" });
  function draw() {
    const t = types.find(t => t.job_type === typeSel.value);
    description.textContent = t.description;
    const s = t.params_schema;
    const required = new Set(s.required || []);
    fields.replaceChildren(...Object.entries(s.properties || {}).map(([n, p]) => fieldFor(n, p, required.has(n))));
  }
  typeSel.addEventListener("change", draw);
  draw();
  const form = h("form", { id: "submit-form", class: "submit" },
    h("div", { class: "field" }, h("label", { for: "submit-type" }, "Job type"), typeSel), description, fields,
    h("div", { class: "field" }, h("label", { for: "submit-policy" }, "Outcome policy"), policy),
    formError, h("button", { type: "submit", id: "submit-button", disabled: readOnly(), title: readOnlyTitle(null) }, "Submit"));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    for (const el of form.querySelectorAll(".error")) el.textContent = "";
    const params = {};
    for (const input of fields.querySelectorAll("input, select, textarea")) {
      const v = readField(input);
      if (v !== undefined) params[input.name] = v;
    }
    const body = { job_type: typeSel.value, params };
    if (policy.value) body.outcome_policy = policy.value;
    try {
      const r = await api("/api/jobs", { method: "POST", json: body });
      navigate(`/jobs/${r.body.id}`);
    } catch (err) {
      const errors = (err.problem && err.problem.errors) || [];
      let placed = false;
      for (const fe of errors) {
        const name = fe.field.replace(/^params\./, "").split(/[.[]/)[0];
        const slot = form.querySelector(`[data-error-for="${name}"]`);
        if (slot) { slot.textContent = fe.message; placed = true; }
      }
      if (!placed) formError.textContent = problemText(err);
    }
  });
  return form;
}

// ---------- a job ----------

async function jobPage(id) {
  // Expanded groups, in the URL too (`?expand=a,b`): a reload keeps them.
  const expand = new Set((new URLSearchParams(location.search).get("expand") || "").split(",").filter(Boolean));
  const header = h("div", { class: "job-header" });
  const dag = h("div", { class: "dag-box", id: "dag" });
  const tools = h("div", { class: "dag-tools", id: "dag-tools" });
  const details = h("aside", { class: "details", id: "details" }, h("p", { class: "muted" }, "Click a node for its details."));
  const result = h("pre", { class: "result", id: "result" });
  const mapBox = h("div", { id: "map", class: "map", hidden: true });
  const links = h("div", { class: "links", id: "links" });
  app.replaceChildren(header, tools, h("div", { class: "job-body" }, dag, details), mapBox, links, h("h2", {}, "Result"), result);
  let job = null;
  let map = null;

  async function refresh() {
    const q = expand.size ? `?expand=${encodeURIComponent([...expand].join(","))}` : "";
    const g = (await api(`/api/jobs/${id}/graph${q}`)).body;
    job = g.job;
    drawHeader();
    Dag.render(dag, g, onNode, collapse);
    dag.dataset.nodes = g.nodes.length;
    drawTools(g);
    if (!window.__firstRender) window.__firstRender = performance.now();
    result.textContent = job.result !== undefined ? JSON.stringify(job.result, null, 2)
      : job.error ? `${job.error.code}: ${job.error.message}` : "(not finished)";
    if (map) await map.refresh(job);
  }

  function syncUrl() {
    const url = `/jobs/${id}${expand.size ? `?expand=${encodeURIComponent([...expand].join(","))}` : ""}`;
    if (url !== location.pathname + location.search) history.replaceState(history.state, "", url);
  }

  async function collapse(group) {
    expand.delete(group);
    syncUrl();
    await refresh();
  }

  // Above the DAG: how to expand (click a group) or collapse what is expanded.
  function drawTools(g) {
    const groups = g.nodes.filter(n => n.kind === "group");
    const expanded = [...expand].filter(e => g.nodes.some(n => n.group === e && n.kind !== "group"));
    tools.replaceChildren(
      ...expanded.map(e => h("button", { class: "collapse-group", "data-collapse": e, onclick: () => collapse(e) }, `− Collapse ${e}`)),
      ...(groups.length ? [h("span", { class: "muted" }, "Click a group to draw its tasks one by one.")] : []));
  }

  function drawHeader() {
    const running = !TERMINAL.includes(job.status);
    const ro = readOnly();
    const counts = Object.entries(job.tasks || {}).map(([s, c]) => h("span", { class: `count status-${s}`, "data-count": s }, `${s.toLowerCase()} ${c}`));
    header.replaceChildren(
      h("h1", {}, `${job.job_type} `, statusBadge(job.status)),
      h("p", { class: "muted mono" }, job.id),
      progressBar(job),
      h("div", { class: "counts", id: "counts" }, counts),
      h("p", { class: "muted" }, `attempt ${job.attempt} · created ${time(job.created_at)} · started ${time(job.started_at)} · finished ${time(job.finished_at)}`),
      h("div", { class: "actions" },
        h("button", { id: "cancel", disabled: !running || ro, title: readOnlyTitle("cancel the job"), onclick: () => act("Cancel this job?", () => api(`/api/jobs/${id}/cancel`, { method: "POST" })) }, "Cancel"),
        h("button", { id: "rerun", disabled: !["FAILED", "CANCELLED"].includes(job.status) || ro, title: readOnlyTitle("run the job again: same ID, attempt + 1"), onclick: () => act("Re-run this job (same ID, attempt + 1)?", () => api("/api/jobs?force=true", { method: "POST", json: { job_type: job.job_type, params: job.params, outcome_policy: job.outcome_policy } })) }, "Re-run"),
        h("button", { id: "delete", disabled: running || ro, title: readOnlyTitle("delete the job with its tasks and events"), onclick: () => act("Delete this job with its tasks and events?", async () => { await api(`/api/jobs/${id}`, { method: "DELETE" }); navigate("/"); }) }, "Delete"),
        ro ? h("span", { class: "muted", id: "read-only" }, "read-only API key: viewing only") : null,
        h("span", { class: "error", id: "action-error" })));
  }

  async function act(question, f) {
    if (!confirm(question)) return;
    try { await f(); await refresh(); } catch (e) {
      if (e.status === 403) drawHeader(); // the key turned out read-only: disable the actions
      document.getElementById("action-error").textContent = problemText(e);
    }
  }

  async function onNode(n) {
    if (n.kind === "group") {
      if (n.size > 1000) { details.replaceChildren(h("p", {}, `${n.label}: ${n.size} tasks, too many to draw one by one.`), groupCounts(n)); return; }
      expand.add(n.group);
      syncUrl();
      await refresh();
      return;
    }
    const t = (await api(`/api/jobs/${id}/tasks/${n.id}`)).body;
    const duration = t.started_at && t.finished_at ? `${((t.finished_at - t.started_at) / 1000).toFixed(2)} s` : "—";
    details.replaceChildren(
      h("h3", {}, `${t.task}[${t.key}] `, statusBadge(t.status)),
      h("dl", {},
        h("dt", {}, "kind"), h("dd", {}, t.kind),
        h("dt", {}, "attempt"), h("dd", {}, `${t.attempt} (starts ${t.starts ?? 0})`),
        h("dt", {}, "duration"), h("dd", {}, duration),
        h("dt", {}, "group"), h("dd", {}, t.group || "—"),
        t.error ? [h("dt", {}, "error"), h("dd", { class: "error" }, `${t.error.code}${t.error.class ? ` (${t.error.class})` : ""}: ${t.error.message}`)] : null),
      h("h4", {}, "params"), h("pre", {}, JSON.stringify(t.params ?? null, null, 2)),
      h("h4", {}, "result"), h("pre", {}, JSON.stringify(t.result ?? null, null, 2)));
    if (n.group && expand.has(n.group)) {
      details.append(h("button", { onclick: () => collapse(n.group) }, `− Collapse ${n.group}`));
    }
  }

  function groupCounts(n) {
    return h("ul", {}, Object.entries(n.counts).map(([s, c]) => h("li", {}, `${s}: ${c}`)));
  }

  await refresh();
  if (Maps.has(job.job_type)) {
    mapBox.hidden = false;
    map = Maps.create(job, mapBox, links);
    await map.refresh(job);
  }
  const update = throttle(() => refresh().catch(() => {}), 300);
  let after = 0;
  const stop = follow(`/api/jobs/${id}/events`, () => update(), {
    poll: async () => {
      const page = (await api(`/api/jobs/${id}/events?after=${after}&limit=1000`)).body;
      if (page.items.length) { after = page.next_after; update(); }
    },
  });
  return () => { stop(); if (map) map.remove(); };
}

// ---------- maps of geospatial jobs ----------

const Maps = (() => {
  const colour = s => getComputedStyle(document.documentElement).getPropertyValue(`--status-${s}`).trim() || "#888";

  // XYZ tile -> lon/lat of its north-west corner.
  function tileCorner(z, x, y) {
    const n = 2 ** z;
    const lon = (x / n) * 360 - 180;
    const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;
    return [lat, lon];
  }

  function blockBounds(b) {
    return [tileCorner(b.z, b.min_x, b.max_y + 1), tileCorner(b.z, b.max_x + 1, b.min_y)];
  }

  async function allTasks(jobId, name) {
    const out = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ name, limit: 1000 });
      if (cursor) q.set("cursor", cursor);
      const page = (await api(`/api/jobs/${jobId}/tasks?${q}`)).body;
      out.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return out;
  }

  function dataUrl(container, blob) {
    return `/data/${encodeURIComponent(container)}/${blob.split("/").map(encodeURIComponent).join("/")}`;
  }

  // Tiles through fetch when a key is needed (an <img> cannot send one).
  function tileLayer(template, options) {
    if (!apiKey()) return L.tileLayer(template, options);
    const Layer = L.GridLayer.extend({
      createTile(c, done) {
        const img = document.createElement("img");
        fetch(L.Util.template(template, c), { headers: { Authorization: `Bearer ${apiKey()}` } })
          .then(r => (r.ok ? r.blob() : Promise.reject(r.status)))
          .then(b => { img.src = URL.createObjectURL(b); done(null, img); })
          .catch(e => done(e, img));
        return img;
      },
    });
    return new Layer(options);
  }

  // The world basemap, embedded (Natural Earth 1:110m, public domain, from npm's
  // world-atlas as TopoJSON): land and coastlines, country borders. Loaded once per page.
  let world = null;
  function worldLayers() {
    if (!world) world = fetch("/assets/world-110m.json").then(r => (r.ok ? r.json() : Promise.reject(new Error(`basemap: HTTP ${r.status}`))));
    return world.then(topo => ({
      land: unwrapped(topojson.feature(topo, topo.objects.land)),
      borders: unwrapped(topojson.mesh(topo, topo.objects.countries, (a, b) => a !== b)),
    }));
  }

  // The data is on the sphere: a ring that crosses the antimeridian (Russia, Fiji) jumps from
  // 180 to -180, which a flat map draws as a line across the world. Unwrap such jumps so the
  // ring runs on past 180; jumps along a pole (Antarctica's ring) are the ring's own edges.
  function unwrapLine(line) {
    let shift = 0;
    return line.map((p, i) => {
      const q = line[i - 1];
      if (q && Math.abs(p[0] - q[0]) > 180 && Math.abs(p[1]) < 89.9 && Math.abs(q[1]) < 89.9) shift -= Math.sign(p[0] - q[0]) * 360;
      return [p[0] + shift, p[1]];
    });
  }
  function unwrapped(g) {
    if (g.type === "FeatureCollection") return { ...g, features: g.features.map(unwrapped) };
    if (g.type === "Feature") return { ...g, geometry: unwrapped(g.geometry) };
    const depth = { LineString: 0, Polygon: 1, MultiLineString: 1, MultiPolygon: 2 }[g.type];
    if (depth === undefined) return g;
    const walk = (c, d) => (d === 0 ? unwrapLine(c) : c.map(x => walk(x, d - 1)));
    return { ...g, coordinates: walk(g.coordinates, depth) };
  }

  // OpenStreetMap's tiles: an online layer, off unless the user turned it on (remembered).
  const OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
  const osmWanted = () => localStorage.getItem("tessera.osm") === "on";

  function basemap(map, box) {
    map.createPane("basemap").style.zIndex = 150; // under the tiles (200) and the shapes (400)
    const offline = L.layerGroup([], { attribution: "Natural Earth" }).addTo(map);
    worldLayers().then(({ land, borders }) => {
      L.geoJSON(land, { pane: "basemap", interactive: false, style: { color: "#8d99a6", weight: 0.8, fillColor: "#f4f3ec", fillOpacity: 1, className: "basemap-land" } }).addTo(offline);
      L.geoJSON(borders, { pane: "basemap", interactive: false, style: { color: "#b3bcc6", weight: 0.6, fill: false, className: "basemap-border" } }).addTo(offline);
      box.dataset.basemap = "shown";
    }).catch(e => { box.dataset.basemap = String(e); });
    const osm = L.tileLayer(OSM, { maxZoom: 19, className: "osm", attribution: "&copy; OpenStreetMap contributors" });
    if (osmWanted()) osm.addTo(map);
    L.control.layers(null, { "World (Natural Earth, offline)": offline, "OpenStreetMap (online)": osm }, { collapsed: false, position: "topright" }).addTo(map);
    map.on("overlayadd", e => { if (e.layer === osm) localStorage.setItem("tessera.osm", "on"); });
    map.on("overlayremove", e => { if (e.layer === osm) localStorage.removeItem("tessera.osm"); });
  }

  function create(job, box, links) {
    const map = L.map(box, { worldCopyJump: true }).setView([20, 0], 2);
    basemap(map, box);
    const blocks = L.layerGroup().addTo(map);
    const footprints = L.layerGroup().addTo(map);
    let tiles = null, fitted = false;
    const p = job.params;

    async function refreshTiled(view) {
      const renders = await allTasks(job.id, "render_tiles");
      const finished = view.status === "SUCCEEDED" && view.result;
      blocks.clearLayers();
      const all = [];
      for (const t of renders) {
        const b = t.params && t.params.block;
        if (!b) continue;
        const bounds = blockBounds(b);
        all.push(...bounds);
        L.rectangle(bounds, { color: colour(t.status), weight: 1, opacity: finished ? 0.4 : 1, fillOpacity: finished ? 0 : 0.35, className: `block status-${t.status}` })
          .bindTooltip(`render_tiles[${t.key}] ${t.status}`).addTo(blocks);
      }
      box.dataset.blocks = renders.length;
      box.dataset.blockStatuses = JSON.stringify(renders.reduce((m, t) => ((m[t.status] = (m[t.status] || 0) + 1), m), {}));
      if (all.length && !fitted) { map.fitBounds(all, { animate: false }); fitted = true; }
      if (finished && !tiles) {
        const r = view.result;
        tiles = tileLayer(`${dataUrl(p.output_container, p.output_prefix)}/{z}/{x}/{y}.png`, {
          minZoom: 0, maxZoom: 22, minNativeZoom: r.zooms ? r.zooms[0] : p.min_zoom, maxNativeZoom: r.zooms ? r.zooms[1] : p.max_zoom,
          bounds: all.length ? L.latLngBounds(all) : undefined, className: "tiles",
        }).addTo(map);
        box.dataset.tiles = "shown";
        try {
          const item = (await api(dataUrl(p.output_container, r.stac_item))).body;
          L.geoJSON(item.geometry, { style: { color: "#222", weight: 2, fill: false }, className: "footprint" }).addTo(footprints);
        } catch { /* the item is linked below anyway */ }
        links.replaceChildren(h("h2", {}, "Outputs"), h("ul", {},
          h("li", {}, h("a", { href: dataUrl(p.output_container, r.cog) }, "Cloud Optimized GeoTIFF")),
          h("li", {}, h("a", { href: dataUrl(p.output_container, r.tilejson) }, "TileJSON")),
          h("li", {}, h("a", { href: dataUrl(p.output_container, r.stac_item) }, "STAC item")),
          h("li", {}, h("a", { href: dataUrl(p.output_container, r.map) }, "Standalone map"))));
      }
    }

    // Items produced (cog_conversion, sync_container): their STAC footprints, as they come.
    async function refreshItems(view) {
      const name = job.job_type === "cog_conversion" ? "cog" : "catalog_file";
      const done = (await allTasks(job.id, name)).filter(t => t.status === "SUCCEEDED" && t.result);
      footprints.clearLayers();
      const all = [];
      for (const t of done) {
        const bbox = t.result.bbox || (t.result.cog && t.result.cog.bbox);
        if (!bbox) continue;
        const b = [[bbox[1], bbox[0]], [bbox[3], bbox[2]]];
        all.push(...b);
        L.rectangle(b, { color: colour("SUCCEEDED"), weight: 1, className: "footprint" }).bindTooltip(String(t.key)).addTo(footprints);
      }
      box.dataset.footprints = all.length / 2;
      // Not closer than zoom 6: the world around the footprints stays in view.
      if (all.length && !fitted) { map.fitBounds(all, { maxZoom: 6, padding: [24, 24], animate: false }); fitted = true; }
      void view;
    }

    return {
      refresh: view => (job.job_type === "tiled_raster" ? refreshTiled(view) : refreshItems(view)),
      remove: () => map.remove(),
    };
  }

  const TYPES = new Set(["tiled_raster", "cog_conversion", "sync_container"]);
  return { has: t => TYPES.has(t), create, unwrapped };
})();

// ---------- routing ----------

function navigate(path) {
  history.pushState({}, "", path);
  route();
}

function notFound(title, detail) {
  document.title = "Not found · Tessera";
  app.replaceChildren(h("section", { class: "not-found", id: "not-found" },
    h("h1", {}, title), h("p", {}, detail), h("p", {}, link("/", "← All jobs"))));
}

async function route() {
  stopPage();
  stopPage = () => {};
  document.title = "Tessera";
  const job = location.pathname.match(/^\/jobs\/([^/]*)\/?$/);
  try {
    if (job) {
      const id = decodeURIComponent(job[1]);
      if (!/^[0-9a-fA-F]{64}$/.test(id)) {
        notFound("Job not found", `“${id}” is not a job ID: a job ID is 64 hexadecimal digits.`);
        return;
      }
      stopPage = await jobPage(id);
    } else if (location.pathname === "/") {
      stopPage = await jobsPage();
    } else {
      notFound("Page not found", `Nothing at ${location.pathname}.`);
    }
  } catch (e) {
    if (job && e.status === 404) notFound("Job not found", `No job ${decodeURIComponent(job[1])}: ${problemText(e)}`);
    else app.replaceChildren(h("p", { class: "error", id: "page-error" }, problemText(e)));
  }
}

document.addEventListener("click", e => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
route();
