// The task DAG as SVG: layered by dependency depth (the server gives each node its layer),
// nodes ordered within a layer by the mean position of their predecessors, shapes by kind,
// colours by status. Written here (no layout library): the server already collapses large
// fan-outs into group nodes, so a drawn graph stays small.
"use strict";

const Dag = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 190, H = 44, GAP_X = 70, GAP_Y = 22, PAD = 16;

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  // Positions: x by layer; y by the order within the layer (barycentre of predecessors).
  function layout(nodes, edges) {
    const layers = new Map();
    for (const n of nodes) {
      if (!layers.has(n.layer)) layers.set(n.layer, []);
      layers.get(n.layer).push(n);
    }
    const preds = new Map(nodes.map(n => [n.id, []]));
    for (const [a, b] of edges) if (preds.has(b)) preds.get(b).push(a);
    const pos = new Map();
    const order = [...layers.keys()].sort((a, b) => a - b);
    let height = 0;
    for (const l of order) {
      const row = layers.get(l);
      const key = n => {
        const ys = preds.get(n.id).map(p => pos.get(p)).filter(Boolean).map(p => p.y);
        return ys.length ? ys.reduce((s, y) => s + y, 0) / ys.length : 0;
      };
      const keyed = row.map((n, i) => [key(n), i, n]);
      keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      keyed.forEach(([, , n], i) => {
        pos.set(n.id, { x: PAD + l * (W + GAP_X), y: PAD + i * (H + GAP_Y) });
      });
      height = Math.max(height, PAD * 2 + row.length * (H + GAP_Y));
    }
    const width = PAD * 2 + (order.length ? order[order.length - 1] + 1 : 0) * (W + GAP_X);
    return { pos, width, height };
  }

  function shape(g, n) {
    const kind = n.kind;
    if (kind === "orchestrator") {
      const s = 12;
      el("polygon", { class: "shape", points: `${s},0 ${W - s},0 ${W},${H / 2} ${W - s},${H} ${s},${H} 0,${H / 2}` }, g);
    } else if (kind === "barrier") {
      el("rect", { class: "shape", x: 0, y: 0, width: W, height: H, rx: 2 }, g);
      el("rect", { class: "bar", x: 0, y: 0, width: 8, height: H }, g);
      el("rect", { class: "bar", x: W - 8, y: 0, width: 8, height: H }, g);
    } else if (kind === "group") {
      el("rect", { class: "stack", x: 6, y: -6, width: W, height: H, rx: 6 }, g);
      el("rect", { class: "shape", x: 0, y: 0, width: W, height: H, rx: 6 }, g);
    } else {
      el("rect", { class: "shape", x: 0, y: 0, width: W, height: H, rx: kind === "sequential" ? 14 : 4 }, g);
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

  // Draw `graph` ({nodes, edges}) into `container`; `onNode(node)` on a click.
  function render(container, graph, onNode) {
    const { pos, width, height } = layout(graph.nodes, graph.edges);
    const svg = el("svg", { class: "dag", width, height, viewBox: `0 0 ${width} ${height}` });
    const edgeLayer = el("g", { class: "edges" }, svg);
    for (const [a, b] of graph.edges) {
      const p = pos.get(a), q = pos.get(b);
      if (!p || !q) continue;
      const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, mx = (x1 + x2) / 2;
      el("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "data-from": a, "data-to": b }, edgeLayer);
    }
    for (const n of graph.nodes) {
      const p = pos.get(n.id);
      const g = el("g", {
        class: `node kind-${n.kind}` + (n.status ? ` status-${n.status}` : ""),
        transform: `translate(${p.x},${p.y})`,
        "data-id": n.id, "data-kind": n.kind, "data-status": n.status || "",
        "data-size": n.size, "data-counts": JSON.stringify(n.counts || {}),
        tabindex: 0,
      }, svg);
      shape(g, n);
      if (n.kind === "group") counts(g, n);
      const title = el("text", { x: 12, y: n.kind === "group" ? 17 : 19, class: "label" }, g);
      title.textContent = n.kind === "group" ? `${n.label} ×${n.size}` : n.label;
      const sub = el("text", { x: 12, y: n.kind === "group" ? 31 : 35, class: "sub" }, g);
      sub.textContent = n.kind === "group" ? countText(n) || "no task yet" : `${n.kind} · ${(n.status || "").toLowerCase()}`;
      const tip = el("title", {}, g);
      tip.textContent = n.kind === "group" ? `group ${n.label}: ${countText(n)} (click to expand)` : `${n.label}: ${n.status}`;
      g.addEventListener("click", () => onNode(n));
      g.addEventListener("keydown", e => { if (e.key === "Enter") onNode(n); });
    }
    container.replaceChildren(svg);
  }

  return { render, layout };
})();
