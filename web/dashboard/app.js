// The dashboard: a client of the HTTP API (docs/http-api.md), same origin, no build step.
// Pages: `/` (jobs, live; the submit form) and `/jobs/{id}` (the DAG, live; details; map).
"use strict";

const app = document.getElementById("app");
const live = document.getElementById("live");
let stopPage = () => {};

// ---------- API ----------

function apiKey() { return localStorage.getItem("tessera.key") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  if (options.json !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, Object.assign({}, options, { headers }));
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

function progressBar(p) {
  const pct = Math.round((p || 0) * 100);
  return h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, title: `${pct}%` },
    h("div", { class: "fill", style: `width:${pct}%` }), h("span", {}, `${pct}%`));
}

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

async function jobsPage() {
  const doc = await openapi();
  const statuses = doc.components.schemas.Job.properties.status.enum;
  const types = (await api("/api/job-types")).body.items;
  const params = new URLSearchParams(location.search);
  const filter = { status: params.get("status") || "", job_type: params.get("job_type") || "" };
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
      h("div", { class: "filters" }, statusSel, typeSel),
      h("table", { class: "jobs", id: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Progress", "Tasks", "Created", "Finished"].map(c => h("th", {}, c)))),
        tbody),
      h("div", { class: "pager" }, prev, next)),
    h("section", { id: "submit" }, h("h2", {}, "Submit a job"), await submitForm(types)));

  function reset() { page = 0; cursors.length = 1; load(); }

  function row(v) {
    return h("tr", { "data-id": v.id },
      h("td", {}, link(`/jobs/${v.id}`, v.id.slice(0, 12))),
      h("td", {}, v.job_type), h("td", {}, statusBadge(v.status)),
      h("td", {}, progressBar(v.progress)),
      h("td", {}, v.planned_tasks), h("td", {}, time(v.created_at)), h("td", {}, time(v.finished_at)));
  }

  async function load() {
    const q = new URLSearchParams({ limit: 20 });
    if (statusSel.value) q.set("status", statusSel.value);
    if (typeSel.value) q.set("job_type", typeSel.value);
    if (cursors[page]) q.set("cursor", cursors[page]);
    const body = (await api(`/api/jobs?${q}`)).body;
    cursors[page + 1] = body.next_cursor;
    prev.disabled = page === 0;
    next.disabled = !body.next_cursor;
    tbody.replaceChildren(...body.items.map(j => row(Object.assign({ progress: j.status === "SUCCEEDED" ? 1 : 0 }, j))));
    for (const j of body.items) {
      if (!["SUCCEEDED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"].includes(j.status)) refreshRow(j.id);
    }
  }

  async function refreshRow(id) {
    try { update((await api(`/api/jobs/${id}`)).body); } catch { /* shown on the next event */ }
  }

  function matches(v) {
    return (!statusSel.value || v.status === statusSel.value) && (!typeSel.value || v.job_type === typeSel.value);
  }

  function update(v) {
    const old = tbody.querySelector(`tr[data-id="${v.id}"]`);
    if (old) old.replaceWith(row(v));
    else if (page === 0 && matches(v)) tbody.prepend(row(v));
  }

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
    formError, h("button", { type: "submit" }, "Submit"));
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

const TERMINAL = ["SUCCEEDED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"];

async function jobPage(id) {
  const expand = new Set();
  const header = h("div", { class: "job-header" });
  const dag = h("div", { class: "dag-box", id: "dag" });
  const details = h("aside", { class: "details", id: "details" }, h("p", { class: "muted" }, "Click a node for its details."));
  const result = h("pre", { class: "result", id: "result" });
  const mapBox = h("div", { id: "map", class: "map", hidden: true });
  const links = h("div", { class: "links", id: "links" });
  app.replaceChildren(header, h("div", { class: "job-body" }, dag, details), mapBox, links, h("h2", {}, "Result"), result);
  let job = null;
  let map = null;

  async function refresh() {
    const q = expand.size ? `?expand=${encodeURIComponent([...expand].join(","))}` : "";
    const g = (await api(`/api/jobs/${id}/graph${q}`)).body;
    job = g.job;
    drawHeader();
    Dag.render(dag, g, onNode);
    dag.dataset.nodes = g.nodes.length;
    if (!window.__firstRender) window.__firstRender = performance.now();
    result.textContent = job.result !== undefined ? JSON.stringify(job.result, null, 2)
      : job.error ? `${job.error.code}: ${job.error.message}` : "(not finished)";
    if (map) await map.refresh(job);
  }

  function drawHeader() {
    const running = !TERMINAL.includes(job.status);
    const counts = Object.entries(job.tasks || {}).map(([s, c]) => h("span", { class: `count status-${s}`, "data-count": s }, `${s.toLowerCase()} ${c}`));
    header.replaceChildren(
      h("h1", {}, `${job.job_type} `, statusBadge(job.status)),
      h("p", { class: "muted mono" }, job.id),
      progressBar(job.progress),
      h("div", { class: "counts", id: "counts" }, counts),
      h("p", { class: "muted" }, `attempt ${job.attempt} · created ${time(job.created_at)} · started ${time(job.started_at)} · finished ${time(job.finished_at)}`),
      h("div", { class: "actions" },
        h("button", { id: "cancel", disabled: !running, onclick: () => act("Cancel this job?", () => api(`/api/jobs/${id}/cancel`, { method: "POST" })) }, "Cancel"),
        h("button", { id: "rerun", disabled: !["FAILED", "CANCELLED"].includes(job.status), onclick: () => act("Re-run this job (same ID, attempt + 1)?", () => api("/api/jobs?force=true", { method: "POST", json: { job_type: job.job_type, params: job.params, outcome_policy: job.outcome_policy } })) }, "Re-run"),
        h("button", { id: "delete", disabled: running, onclick: () => act("Delete this job with its tasks and events?", async () => { await api(`/api/jobs/${id}`, { method: "DELETE" }); navigate("/"); }) }, "Delete"),
        h("span", { class: "error", id: "action-error" })));
  }

  async function act(question, f) {
    if (!confirm(question)) return;
    try { await f(); await refresh(); } catch (e) { document.getElementById("action-error").textContent = problemText(e); }
  }

  async function onNode(n) {
    if (n.kind === "group") {
      if (n.size > 1000) { details.replaceChildren(h("p", {}, `${n.label}: ${n.size} tasks, too many to draw one by one.`), groupCounts(n)); return; }
      expand.add(n.group);
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
      details.append(h("button", { onclick: async () => { expand.delete(n.group); await refresh(); } }, `Collapse ${n.group}`));
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

  function create(job, box, links) {
    const map = L.map(box, { worldCopyJump: true }).setView([0, 0], 1);
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
      if (all.length && !fitted) { map.fitBounds(all); fitted = true; }
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
      const name = job.job_type === "cog_conversion" ? "cog" : "stac_item";
      const done = (await allTasks(job.id, name)).filter(t => t.status === "SUCCEEDED" && t.result);
      footprints.clearLayers();
      const all = [];
      for (const t of done) {
        const bbox = t.result.bbox || (t.result.item && t.result.item.bbox);
        if (!bbox) continue;
        const b = [[bbox[1], bbox[0]], [bbox[3], bbox[2]]];
        all.push(...b);
        L.rectangle(b, { color: colour("SUCCEEDED"), weight: 1, className: "footprint" }).bindTooltip(String(t.key)).addTo(footprints);
      }
      box.dataset.footprints = all.length / 2;
      if (all.length && !fitted) { map.fitBounds(all); fitted = true; }
      void view;
    }

    return {
      refresh: view => (job.job_type === "tiled_raster" ? refreshTiled(view) : refreshItems(view)),
      remove: () => map.remove(),
    };
  }

  const TYPES = new Set(["tiled_raster", "cog_conversion", "sync_container"]);
  return { has: t => TYPES.has(t), create };
})();

// ---------- routing ----------

function navigate(path) {
  history.pushState({}, "", path);
  route();
}

async function route() {
  stopPage();
  stopPage = () => {};
  const m = location.pathname.match(/^\/jobs\/([0-9a-f]{64})$/);
  try {
    stopPage = m ? await jobPage(m[1]) : await jobsPage();
  } catch (e) {
    app.replaceChildren(h("p", { class: "error", id: "page-error" }, problemText(e)));
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
