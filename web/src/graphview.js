// The graph drawing: cytoscape.js with the fcose layout (compound nodes are
// namespaces and the world). Large graphs get cytoscape's viewport
// optimisations (textures while panning, edges hidden while moving, labels
// only when zoomed in), so no handler does work per edge per frame.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { keepLink, keepNode } from "./model.js";

cytoscape.use(fcose);

export const colors = { allow: "#4a7fb5", "audit-deny": "#e08a00", deny: "#c62828", world: "#8a8f98" };
const LARGE = 1500; // edges above which the drawing uses the cheap edge style

const WORLD = "world:";

function parentOf(n) {
  return n.kind === "external" ? WORLD : `ns:${n.namespace}`;
}

function nodeElement(n, pos) {
  const el = { group: "nodes", data: { id: n.id, label: n.label, kind: n.kind, parent: parentOf(n) }, classes: n.kind };
  if (pos) el.position = pos;
  return el;
}

function groupElement(id, label, kind) {
  return { group: "nodes", data: { id, label, kind: "group", group: kind }, classes: `group ${kind}` };
}

// gradient gives the stop colours and positions of a mixed edge: each
// verdict's share of the flows as a band of its colour.
function gradient(s) {
  const total = s.allowed + s.auditDenied + s.denied || 1;
  const a = (100 * s.allowed) / total, b = (100 * (s.allowed + s.auditDenied)) / total;
  return {
    gc: `${colors.allow} ${colors.allow} ${colors["audit-deny"]} ${colors["audit-deny"]} ${colors.deny} ${colors.deny}`,
    gp: `0% ${a.toFixed(1)}% ${a.toFixed(1)}% ${b.toFixed(1)}% ${b.toFixed(1)}% 100%`,
  };
}

function linkData(l) {
  const s = l.split;
  const mixed = [s.allowed, s.auditDenied, s.denied].filter((x) => x > 0).length > 1;
  const d = {
    id: l.id, source: l.source, target: l.destination, label: l.label,
    color: colors[l.dominant], width: Math.min(1.5 + Math.log10(1 + l.flows), 6), mixed,
  };
  if (mixed) Object.assign(d, gradient(s));
  return d;
}

function linkElement(l) {
  const d = linkData(l);
  return { group: "edges", data: d, classes: `${l.dominant}${d.mixed ? " mixed" : ""}` };
}

function style(large) {
  return [
    { selector: "node", style: {
      label: "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 3, color: "#1f2430",
      "background-color": "#2f6db0", width: 22, height: 22, "min-zoomed-font-size": 7,
    } },
    { selector: "node.external", style: { shape: "round-rectangle", "background-color": colors.world, width: 26, height: 16 } },
    { selector: "node.group", style: {
      "background-color": "#eef2f8", "background-opacity": 0.6, "border-color": "#9aa8bd", "border-width": 1,
      label: "data(label)", "text-valign": "top", "text-halign": "center", "font-weight": "bold", "font-size": 12,
      padding: 14, shape: "round-rectangle",
    } },
    { selector: "node.group.world", style: { "background-color": "#f3f3f3", "border-style": "dashed" } },
    { selector: "edge", style: {
      width: "data(width)", "line-color": "data(color)", "target-arrow-color": "data(color)",
      "target-arrow-shape": large ? "none" : "triangle", "curve-style": large ? "haystack" : "bezier",
      "arrow-scale": 0.8, opacity: 0.85,
      label: large ? "" : "data(label)", "font-size": 9, "min-zoomed-font-size": 8, "text-rotation": "autorotate",
      "text-background-color": "#ffffff", "text-background-opacity": 0.8, "text-background-padding": 1, color: "#333",
    } },
    { selector: "edge.mixed", style: {
      "line-fill": "linear-gradient", "line-gradient-stop-colors": "data(gc)", "line-gradient-stop-positions": "data(gp)",
    } },
    { selector: "edge.audit-deny", style: { "line-style": "dashed" } },
    { selector: ".hidden", style: { display: "none" } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#111" } },
    { selector: "edge:selected", style: { width: 6, opacity: 1, "overlay-opacity": 0.15, "overlay-color": "#000" } },
    { selector: ".faded", style: { opacity: 0.15 } },
  ];
}

/**
 * GraphView draws a model (model.js) into container and keeps it up to
 * date: setModel merges a new model into the drawing, keeping the
 * positions of the nodes already there and placing only new ones.
 */
export class GraphView {
  constructor(container, { onEdge, onNode } = {}) {
    this.container = container;
    this.model = null;
    this.filter = {};
    this.onEdge = onEdge;
    this.onNode = onNode;
    this.cy = null;
    this.layoutMs = 0;
  }

  _create(large) {
    this.cy = cytoscape({
      container: this.container,
      style: style(large),
      minZoom: 0.02,
      maxZoom: 4,
      textureOnViewport: large,
      hideEdgesOnViewport: large,
      hideLabelsOnViewport: large,
      motionBlur: false,
      pixelRatio: large ? 1 : "auto",
      boxSelectionEnabled: false,
    });
    this.large = large;
    this.cy.on("tap", "edge", (ev) => this.onEdge && this.onEdge(ev.target.id()));
    this.cy.on("tap", "node", (ev) => {
      const k = ev.target.data("kind");
      if (k !== "group" && this.onNode) this.onNode(ev.target.id());
    });
  }

  /** setModel draws m: the first time with a full layout, later by merging. Returns a promise settled with the layout. */
  setModel(m) {
    const first = !this.cy;
    if (first) this._create(m.links.size > LARGE);
    const cy = this.cy;
    this.model = m;
    const t0 = performance.now();
    cy.batch(() => {
      const fresh = []; // added in one call: much faster than one by one
      const groups = new Set();
      for (const n of m.nodes.values()) groups.add(parentOf(n));
      for (const g of groups) {
        if (cy.getElementById(g).empty()) fresh.push(g === WORLD ? groupElement(g, "the world", "world") : groupElement(g, g.slice(3), "namespace"));
      }
      cy.add(fresh);
      fresh.length = 0;
      for (const n of m.nodes.values()) {
        if (cy.getElementById(n.id).empty()) fresh.push(nodeElement(n, first ? undefined : this._placeNew(n)));
      }
      cy.add(fresh);
      fresh.length = 0;
      for (const l of m.links.values()) {
        const e = cy.getElementById(l.id);
        if (e.empty()) {
          fresh.push(linkElement(l));
          continue;
        }
        const d = linkData(l);
        e.data(d);
        e.classes(`${l.dominant}${d.mixed ? " mixed" : ""}`);
      }
      cy.add(fresh);
      // What the model no longer has goes (a shorter time window).
      cy.edges().forEach((e) => { if (!m.links.has(e.id())) e.remove(); });
      cy.nodes().forEach((n) => {
        if (n.data("kind") === "group") return;
        if (!m.nodes.has(n.id())) n.remove();
      });
      cy.nodes(".group").forEach((g) => { if (g.children().empty()) g.remove(); });
    });
    this.applyFilter(this.filter);
    this.timing = { build: performance.now() - t0 };
    if (!first) return Promise.resolve(0);
    return this._layout().then(() => {
      this.timing.layout = performance.now() - t0 - this.timing.build;
      this.layoutMs = performance.now() - t0;
      return this.layoutMs;
    });
  }

  _layout() {
    return new Promise((resolve) => {
      const n = this.cy.nodes().length;
      const layout = this.cy.layout({
        name: "fcose",
        quality: n > 800 ? "draft" : "default",
        randomize: true,
        animate: false,
        nodeDimensionsIncludeLabels: false,
        packComponents: true,
        nodeRepulsion: 9000,
        idealEdgeLength: 110,
        nestingFactor: 0.1,
        gravityCompound: 1.5,
        gravityRangeCompound: 2.0,
        nodeSeparation: 90,
        tile: true,
        numIter: n > 800 ? 800 : 2500,
        fit: true,
        padding: 30,
      });
      layout.one("layoutstop", () => resolve());
      layout.run();
    });
  }

  // _placeNew puts a node that arrives after the first layout next to a
  // node it talks to, or in its group's box, without moving anything else.
  _placeNew(n) {
    const cy = this.cy;
    for (const l of this.model.links.values()) {
      const other = l.source === n.id ? l.destination : l.destination === n.id ? l.source : null;
      if (!other) continue;
      const o = cy.getElementById(other);
      if (o.nonempty() && o.isNode()) {
        const p = o.position();
        return { x: p.x + 60 + Math.random() * 30, y: p.y + 50 + Math.random() * 30 };
      }
    }
    const g = cy.getElementById(parentOf(n));
    if (g.nonempty() && g.children().nonempty()) {
      const bb = g.children().boundingBox();
      return { x: bb.x2 + 40, y: bb.y1 + Math.random() * Math.max(bb.h, 1) };
    }
    const bb = cy.elements().boundingBox();
    return { x: (bb.x2 || 0) + 120, y: (bb.y1 || 0) + Math.random() * 200 };
  }

  /** applyFilter shows only what f keeps (model.keepLink, keepNode), in one batch. */
  applyFilter(f) {
    this.filter = f;
    const m = this.model;
    const cy = this.cy;
    if (!m || !cy) return;
    const visible = new Set();
    const shownLinks = new Set();
    for (const l of m.links.values()) {
      const a = m.nodes.get(l.source), b = m.nodes.get(l.destination);
      if (a && b && keepLink(f, l, a, b)) {
        shownLinks.add(l.id);
        visible.add(l.source);
        visible.add(l.destination);
      }
    }
    for (const n of m.nodes.values()) if (!visible.has(n.id) && keepNode(f, n)) visible.add(n.id);
    cy.batch(() => {
      cy.edges().forEach((e) => { e.toggleClass("hidden", !shownLinks.has(e.id())); });
      cy.nodes().forEach((n) => {
        if (n.data("kind") === "group") return;
        n.toggleClass("hidden", !visible.has(n.id()));
      });
      cy.nodes(".group").forEach((g) => { g.toggleClass("hidden", g.children(":visible").empty() && g.children().not(".hidden").empty()); });
    });
  }

  /** counts returns the visible workloads, externals and edges. */
  counts() {
    if (!this.cy) return { workloads: 0, externals: 0, edges: 0 };
    const nodes = this.cy.nodes().not(".hidden").not(".group");
    return {
      workloads: nodes.filter(".workload").length,
      externals: nodes.filter(".external").length,
      edges: this.cy.edges().not(".hidden").length,
    };
  }

  select(id) {
    if (!this.cy) return;
    this.cy.elements().unselect();
    const e = this.cy.getElementById(id);
    if (e.nonempty()) e.select();
  }

  fit() { if (this.cy) this.cy.fit(this.cy.elements().not(".hidden"), 30); }

  /** positions returns each workload's and external's position (for tests of the merge). */
  positions() {
    const out = {};
    if (this.cy) this.cy.nodes().not(".group").forEach((n) => { out[n.id()] = { ...n.position() }; });
    return out;
  }
}
