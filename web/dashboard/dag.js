// The task DAG as SVG: layered by dependency depth (the server gives each node its layer),
// nodes ordered within a layer by the mean position of their predecessors, shapes by kind,
// colours by status. Written here (no layout library): the server already collapses large
// fan-outs into group nodes, so a drawn graph stays small. An expanded group (more than
// GRID_ABOVE members in one layer) is laid out as a grid in a frame, with one edge in and one
// out per neighbour instead of one per member, and a "collapse" control on the frame.
"use strict";

const Dag = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 190, H = 44, GAP_X = 70, GAP_Y = 22, PAD = 16;
  // Members of an expanded group: labelled cells up to CELLS_MAX members, small tiles
  // (status colour, label in the tooltip) above.
  const GRID_ABOVE = 12, CELLS_MAX = 100;
  const CELL = { w: 112, h: 26, gap: 6, maxCols: 6 };
  const TILE = { w: 16, h: 16, gap: 3, maxCols: 40 };
  const FRAME_PAD = 10, FRAME_HEAD = 26;

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  // Text widths, measured on a canvas with the page's font (no layout pass per label).
  let ctx = null, family = null;
  function textWidth(text, font) {
    if (!ctx) ctx = document.createElement("canvas").getContext("2d");
    if (!family) family = getComputedStyle(document.documentElement).fontFamily || "sans-serif";
    const f = `${font} ${family}`;
    if (ctx.font !== f) ctx.font = f;
    return ctx.measureText(text).width;
  }

  // `text` cut to `max` pixels with an ellipsis (the full text is in the node's tooltip).
  function fit(text, max, font) {
    if (textWidth(text, font) <= max) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (textWidth(`${text.slice(0, mid)}…`, font) <= max) lo = mid; else hi = mid - 1;
    }
    return `${text.slice(0, lo)}…`;
  }

  // The grid of a group of `n` members: cell size and columns.
  function gridOf(n) {
    const c = n > CELLS_MAX ? TILE : CELL;
    const cols = Math.max(1, Math.min(c.maxCols, Math.ceil(Math.sqrt(n * (c === TILE ? 2 : 1.5)))));
    const rows = Math.ceil(n / cols);
    return {
      cell: c, cols, rows, tiles: c === TILE,
      w: FRAME_PAD * 2 + cols * (c.w + c.gap) - c.gap,
      h: FRAME_HEAD + FRAME_PAD + rows * (c.h + c.gap) - c.gap,
    };
  }

  // Positions: x by layer; y by the order within the layer (barycentre of predecessors).
  // Returns node positions {x, y, w, h, cell}, the frames of expanded groups, and the size.
  function layout(nodes, edges) {
    const layers = new Map();
    for (const n of nodes) {
      if (!layers.has(n.layer)) layers.set(n.layer, []);
      layers.get(n.layer).push(n);
    }
    const preds = new Map(nodes.map(n => [n.id, []]));
    for (const [a, b] of edges) if (preds.has(b)) preds.get(b).push(a);
    const pos = new Map();
    const frames = [];
    const frameOf = new Map(); // node id -> its frame
    const order = [...layers.keys()].sort((a, b) => a - b);
    let height = 0, x = PAD;
    const centre = id => { const p = pos.get(id) || frameOf.get(id); return p ? p.y + p.h / 2 : null; };
    for (const l of order) {
      // Items of the layer: single nodes, and expanded groups (many members) as one block.
      const byGroup = new Map();
      for (const n of layers.get(l)) if (n.group && n.kind !== "group") {
        if (!byGroup.has(n.group)) byGroup.set(n.group, []);
        byGroup.get(n.group).push(n);
      }
      const items = [];
      const inBlock = new Set();
      for (const [g, members] of byGroup) {
        if (members.length <= GRID_ABOVE) continue;
        members.forEach(m => inBlock.add(m.id));
        const grid = gridOf(members.length);
        items.push({ block: true, group: g, members, grid, w: grid.w, h: grid.h, first: layers.get(l).indexOf(members[0]) });
      }
      layers.get(l).forEach((n, i) => { if (!inBlock.has(n.id)) items.push({ node: n, w: W, h: H, first: i }); });
      const key = item => {
        const ys = (item.block ? item.members : [item.node]).flatMap(n => preds.get(n.id)).map(centre).filter(y => y !== null);
        return ys.length ? ys.reduce((s, y) => s + y, 0) / ys.length : 0;
      };
      const keyed = items.map(it => [key(it), it.first, it]);
      keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let y = PAD, colW = W;
      for (const [, , it] of keyed) {
        if (it.block) {
          const f = { group: it.group, size: it.members.length, x, y, w: it.w, h: it.h, tiles: it.grid.tiles };
          frames.push(f);
          const c = it.grid.cell;
          it.members.forEach((m, i) => {
            const col = i % it.grid.cols, row = Math.floor(i / it.grid.cols);
            pos.set(m.id, { x: x + FRAME_PAD + col * (c.w + c.gap), y: y + FRAME_HEAD + row * (c.h + c.gap), w: c.w, h: c.h, cell: it.grid.tiles ? "tile" : "cell" });
            frameOf.set(m.id, f);
          });
        } else {
          pos.set(it.node.id, { x, y, w: W, h: H, cell: null });
        }
        y += it.h + GAP_Y;
        colW = Math.max(colW, it.w);
      }
      height = Math.max(height, y - GAP_Y + PAD);
      x += colW + GAP_X;
    }
    const width = order.length ? x - GAP_X + PAD : PAD * 2;
    return { pos, frames, frameOf, width, height: Math.max(height, PAD * 2) };
  }

  function shape(g, n, w, h) {
    const kind = n.kind;
    if (kind === "orchestrator") {
      const s = 12;
      el("polygon", { class: "shape", points: `${s},0 ${w - s},0 ${w},${h / 2} ${w - s},${h} ${s},${h} 0,${h / 2}` }, g);
    } else if (kind === "barrier") {
      el("rect", { class: "shape", x: 0, y: 0, width: w, height: h, rx: 2 }, g);
      el("rect", { class: "bar", x: 0, y: 0, width: 8, height: h }, g);
      el("rect", { class: "bar", x: w - 8, y: 0, width: 8, height: h }, g);
    } else if (kind === "group") {
      el("rect", { class: "stack", x: 6, y: -6, width: w, height: h, rx: 6 }, g);
      el("rect", { class: "shape", x: 0, y: 0, width: w, height: h, rx: 6 }, g);
    } else {
      el("rect", { class: "shape", x: 0, y: 0, width: w, height: h, rx: kind === "sequential" ? Math.min(14, h / 2) : 4 }, g);
    }
  }

  // The share of each status along the bottom of a group node.
  function counts(g, n) {
    const total = n.size || 1;
    let x = 0;
    for (const [status, c] of Object.entries(n.counts || {})) {
      const w = (W * c) / total;
      el("rect", { class: `seg status-${status}`, x, y: H - 7, width: w, height: 7 }, g);
      x += w;
    }
  }

  function countText(n) {
    return Object.entries(n.counts || {}).map(([s, c]) => `${s.toLowerCase()} ${c}`).join(" · ");
  }

  const LABEL_FONT = "600 12px", SUB_FONT = "10.5px", CELL_FONT = "600 11px";

  // A text in a node, cut to fit `max` pixels; `data-full` keeps the whole text.
  function label(g, attrs, text, max, font) {
    const t = el("text", attrs, g);
    t.textContent = fit(text, max, font);
    t.dataset.full = text;
    return t;
  }

  // Draw `graph` ({nodes, edges}) into `container`; `onNode(node)` on a click,
  // `onCollapse(group)` on an expanded group's "collapse" control.
  function render(container, graph, onNode, onCollapse) {
    const { pos, frames, frameOf, width, height } = layout(graph.nodes, graph.edges);
    const svg = el("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}` });
    for (const f of frames) {
      const g = el("g", { class: "frame", "data-group": f.group, transform: `translate(${f.x},${f.y})` }, svg);
      el("rect", { class: "frame-box", x: 0, y: 0, width: f.w, height: f.h, rx: 6 }, g);
      const collapse = el("g", { class: "collapse", "data-collapse": f.group, tabindex: 0, role: "button" }, g);
      const cw = 78;
      el("rect", { class: "collapse-box", x: f.w - cw - 6, y: 4, width: cw, height: 18, rx: 3 }, collapse);
      const ct = el("text", { x: f.w - cw / 2 - 6, y: 17, "text-anchor": "middle", class: "collapse-text" }, collapse);
      ct.textContent = "− collapse";
      el("title", {}, collapse).textContent = `collapse ${f.group} into one node`;
      const go = () => onCollapse && onCollapse(f.group);
      collapse.addEventListener("click", go);
      collapse.addEventListener("keydown", e => { if (e.key === "Enter") go(); });
      label(g, { x: 10, y: 17, class: "label" }, `${f.group} ×${f.size}`, f.w - cw - 24, LABEL_FONT);
    }
    // Edges between drawn items: a member of a frame stands for its frame (one edge per
    // neighbour, not one per member); edges inside a frame are not drawn.
    const edgeLayer = el("g", { class: "edges" }, svg);
    svg.insertBefore(edgeLayer, svg.firstChild);
    const drawn = new Set();
    for (const [a, b] of graph.edges) {
      const fa = frameOf.get(a), fb = frameOf.get(b);
      if (fa && fa === fb) continue;
      const p = fa || pos.get(a), q = fb || pos.get(b);
      if (!p || !q) continue;
      const k = `${fa ? `frame:${fa.group}` : a}\n${fb ? `frame:${fb.group}` : b}`;
      if (drawn.has(k)) continue;
      drawn.add(k);
      const x1 = p.x + p.w, y1 = p.y + p.h / 2, x2 = q.x, y2 = q.y + q.h / 2, mx = (x1 + x2) / 2;
      el("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "data-from": fa ? `frame:${fa.group}` : a, "data-to": fb ? `frame:${fb.group}` : b }, edgeLayer);
    }
    for (const n of graph.nodes) {
      const p = pos.get(n.id);
      const g = el("g", {
        class: `node kind-${n.kind}` + (n.status ? ` status-${n.status}` : "") + (p.cell ? ` ${p.cell}` : ""),
        transform: `translate(${p.x},${p.y})`,
        "data-id": n.id, "data-kind": n.kind, "data-status": n.status || "",
        "data-size": n.size, "data-counts": JSON.stringify(n.counts || {}),
        tabindex: 0,
      }, svg);
      const tip = el("title", {}, g);
      tip.textContent = n.kind === "group" ? `group ${n.label} ×${n.size}: ${countText(n) || "no task yet"} (click to expand)` : `${n.label}: ${n.status}`;
      if (p.cell === "tile") {
        el("rect", { class: "shape tile-fill", x: 0, y: 0, width: p.w, height: p.h, rx: 2 }, g);
      } else if (p.cell === "cell") {
        shape(g, n, p.w, p.h);
        label(g, { x: 8, y: 17, class: "cell-label" }, n.label, p.w - 14, CELL_FONT);
      } else {
        shape(g, n, W, H);
        if (n.kind === "group") counts(g, n);
        const inset = n.kind === "barrier" ? 14 : 12;
        label(g, { x: inset, y: n.kind === "group" ? 17 : 19, class: "label" },
          n.kind === "group" ? `${n.label} ×${n.size}` : n.label, W - inset * 2, LABEL_FONT);
        label(g, { x: inset, y: n.kind === "group" ? 31 : 35, class: "sub" },
          n.kind === "group" ? countText(n) || "no task yet" : `${n.kind} · ${(n.status || "").toLowerCase()}`, W - inset * 2, SUB_FONT);
      }
      g.addEventListener("click", () => onNode(n));
      g.addEventListener("keydown", e => { if (e.key === "Enter") onNode(n); });
    }
    container.replaceChildren(svg);
  }

  return { render, layout };
})();
