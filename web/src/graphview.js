// The graph drawing: cytoscape.js with the fcose layout (compound nodes are
// namespaces and the world). Large graphs get cytoscape's viewport
// optimisations (textures while panning, edges hidden while moving, labels
// only when zoomed in), so no handler does work per edge per frame.

import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { keepLink, keepNode } from "./model.js";

cytoscape.use(fcose);

export const colors = { allow: "#4a7fb5", "audit-deny": "#e08a00", deny: "#c62828", world: "#8a8f98", cluster: "#5b2a86" };
const LARGE = 1500; // edges above which the drawing uses the cheap edge style

const WORLD = "world:";
const SPREAD = 24; // nodes whose centres come closer than this on both axes overlap (a node is 22 wide)
const GAP = 40; // the least space between two group boxes, in model units (px at zoom 1)
const STORE = "nanoseg.positions.v1"; // localStorage key of the kept positions
const STORE_MAX = 20000; // nodes kept at the most (about 1 MB of JSON)

// seeded returns a pseudo-random generator of numbers in [0, 1) from a
// 32-bit seed (mulberry32): fcose draws from Math.random, so running it
// under one seed gives the same layout for the same elements.
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// withSeed runs fn with Math.random replaced by a generator of seed.
function withSeed(seed, fn) {
  const r = Math.random;
  Math.random = seeded(seed);
  try { return fn(); } finally { Math.random = r; }
}

function byId(a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : 0; }

// groupOrder sorts group ids: namespaces by name, the world last.
function groupOrder(a, b) {
  if (a === WORLD || b === WORLD) return a === WORLD ? (b === WORLD ? 0 : 1) : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

// boxesOverlap says whether boxes a and b ({x1, y1, x2, y2}) come closer than gap.
function boxesOverlap(a, b, gap) {
  return a.x1 < b.x2 + gap && b.x1 < a.x2 + gap && a.y1 < b.y2 + gap && b.y1 < a.y2 + gap;
}

/**
 * separate moves whole boxes so that no two come closer than gap, and
 * returns the shift of each: boxes is [{id, x1, y1, x2, y2}] in model
 * units, the result a Map id → {dx, dy} (only boxes that move). Pairs are
 * pushed apart along the axis of least overlap, the later box (in the
 * given order) moving, for up to 100 rounds; what still overlaps then
 * (rare: a crowd of boxes pushing in circles) is packed in shelves below
 * the rest, so the result never overlaps. Exported for the tests.
 */
export function separate(boxes, gap = GAP) {
  const b = boxes.map((x) => ({ ...x, dx: 0, dy: 0 }));
  const move = (o, dx, dy) => { o.x1 += dx; o.x2 += dx; o.y1 += dy; o.y2 += dy; o.dx += dx; o.dy += dy; };
  let clean = false;
  for (let round = 0; round < 100 && !clean; round++) {
    clean = true;
    for (let i = 0; i < b.length; i++) {
      for (let j = i + 1; j < b.length; j++) {
        const p = b[i], q = b[j];
        if (!boxesOverlap(p, q, gap)) continue;
        clean = false;
        const right = p.x2 + gap - q.x1, left = q.x2 + gap - p.x1;
        const down = p.y2 + gap - q.y1, up = q.y2 + gap - p.y1;
        const m = Math.min(right, left, down, up);
        if (m === right) move(q, right, 0);
        else if (m === left) move(q, -left, 0);
        else if (m === down) move(q, 0, down);
        else move(q, 0, -up);
      }
    }
  }
  if (!clean) {
    // Shelf packing of every box below the first, in the given order.
    const width = Math.max(...b.map((o) => o.x2 - o.x1)) * Math.ceil(Math.sqrt(b.length));
    let x = b[0].x1, y = b[0].y2 + gap, shelf = 0;
    for (let i = 1; i < b.length; i++) {
      const o = b[i], w = o.x2 - o.x1, h = o.y2 - o.y1;
      if (x > b[0].x1 && x + w > b[0].x1 + width) { x = b[0].x1; y += shelf + gap; shelf = 0; }
      move(o, x - o.x1, y - o.y1);
      x += w + gap;
      shelf = Math.max(shelf, h);
    }
  }
  const out = new Map();
  for (const o of b) if (o.dx || o.dy) out.set(o.id, { dx: o.dx, dy: o.dy });
  return out;
}

// loadPositions returns the positions kept by an earlier visit (id →
// {x, y}), or an empty Map (none, storage refused, or unreadable).
function loadPositions() {
  try {
    const raw = window.localStorage.getItem(STORE);
    const o = raw ? JSON.parse(raw) : {};
    const out = new Map();
    for (const [id, p] of Object.entries(o)) {
      if (Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1])) out.set(id, { x: p[0], y: p[1] });
    }
    return out;
  } catch (_) {
    return new Map();
  }
}

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

// linkClasses: the dominant verdict, "mixed" for a split, and "admin" or
// "baseline" when a ClusterNetworkPolicy rule of that tier decides it.
function linkClasses(l, d) {
  let c = l.dominant;
  if (d.mixed) c += " mixed";
  if (l.decidedBy) c += l.decidedBy.tier === "Admin" ? " admin" : " baseline";
  return c;
}

// dataChanged says whether setting d on an element whose data is cur
// would change any value (d's keys only: an edge's gradient stops stay
// when it stops being mixed, unused).
function dataChanged(cur, d) {
  for (const k of Object.keys(d)) if (cur[k] !== d[k]) return true;
  return false;
}

// setHidden gives el the class "hidden" when hide, takes it away
// otherwise, and leaves el alone when it already is so.
function setHidden(el, hide) {
  if (el.hasClass("hidden") !== hide) el.toggleClass("hidden", hide);
}

function linkElement(l) {
  const d = linkData(l);
  return { group: "edges", data: d, classes: linkClasses(l, d) };
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
    // Decided by a ClusterNetworkPolicy rule: a diamond (Admin) or a
    // hollow square (Baseline) in the middle, as the legend shows.
    { selector: "edge.admin", style: {
      "mid-target-arrow-shape": "diamond", "mid-target-arrow-color": colors.cluster, "mid-target-arrow-fill": "filled", "arrow-scale": 1.3,
    } },
    { selector: "edge.baseline", style: {
      "mid-target-arrow-shape": "square", "mid-target-arrow-color": colors.cluster, "mid-target-arrow-fill": "hollow", "arrow-scale": 1.3,
    } },
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
    this.keep = true; // keep positions in localStorage (off for the static export)
    this._saveTimer = 0;
    // gone holds the last position of each node the model no longer has
    // (a shorter time window hides an external peer): it comes back
    // there, and the kept positions keep it meanwhile.
    this.gone = new Map();
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
    // A node dragged by hand stays where it was put, also after a reload;
    // a group dragged into another is pushed out again.
    this.cy.on("dragfree", "node", () => { this._separateGroups(); this._savePositions(); });
    this.cy.on("tap", "node", (ev) => {
      const k = ev.target.data("kind");
      if (k !== "group" && this.onNode) this.onNode(ev.target.id());
    });
  }

  /**
   * setModel draws m: the first time laid out (from the positions kept by
   * an earlier visit when they cover most of m, else by a fresh layout),
   * later by merging. Returns a promise settled with the layout.
   */
  setModel(m) {
    const first = !this.cy;
    if (first) this._create(m.links.size > LARGE);
    const cy = this.cy;
    this.model = m;
    const t0 = performance.now();
    let kept = new Map();
    if (first && this.keep) {
      kept = loadPositions();
      let have = 0;
      for (const id of m.nodes.keys()) if (kept.has(id)) have++;
      // Kept positions of another graph (most nodes new) are not used.
      if (have < Math.max(1, m.nodes.size / 2)) kept = new Map();
      for (const [id, p] of kept) if (!m.nodes.has(id)) this.gone.set(id, p);
    }
    let placed = 0;
    cy.batch(() => {
      const fresh = []; // added in one call: much faster than one by one
      const groups = new Set();
      for (const n of m.nodes.values()) groups.add(parentOf(n));
      for (const g of [...groups].sort(groupOrder)) {
        if (cy.getElementById(g).empty()) fresh.push(g === WORLD ? groupElement(g, "the world", "world") : groupElement(g, g.slice(3), "namespace"));
      }
      cy.add(fresh);
      fresh.length = 0;
      // In id order, so that the seeded layout sees the same graph each time.
      const later = [];
      for (const n of [...m.nodes.values()].sort(byId)) {
        if (cy.getElementById(n.id).nonempty()) continue;
        if (first && kept.size === 0) fresh.push(nodeElement(n));
        else if (kept.has(n.id)) fresh.push(nodeElement(n, kept.get(n.id)));
        else later.push(n);
      }
      cy.add(fresh);
      fresh.length = 0;
      // New nodes go one at a time: each finds room among those placed.
      for (const n of later) {
        const p = this.gone.get(n.id);
        this.gone.delete(n.id);
        cy.add(nodeElement(n, p || this._placeNew(n)));
      }
      placed = later.length;
      for (const l of [...m.links.values()].sort(byId)) {
        const e = cy.getElementById(l.id);
        if (e.empty()) {
          fresh.push(linkElement(l));
          continue;
        }
        // Only what changed is set: cytoscape's data() marks the
        // element's style dirty (and fires an event) even when every value
        // is the same, and a dirty style is recomputed and redrawn; on a
        // live event most edges come back unchanged. classes() already
        // leaves an element whose classes are the same alone.
        const d = linkData(l);
        if (dataChanged(e.data(), d)) e.data(d);
        e.classes(linkClasses(l, d));
      }
      cy.add(fresh);
      // What the model no longer has goes (a shorter time window), in one call.
      cy.edges().filter((e) => !m.links.has(e.id())).remove();
      const going = cy.nodes().filter((n) => n.data("kind") !== "group" && !m.nodes.has(n.id()));
      going.forEach((n) => { this.gone.set(n.id(), { ...n.position() }); });
      going.remove();
      cy.nodes(".group").filter((g) => g.children().empty()).remove();
    });
    if (placed > 0) {
      this._separateGroups();
      this._savePositions();
    }
    this.applyFilter(this.filter);
    this.timing = { build: performance.now() - t0 };
    if (!first) return Promise.resolve(0);
    const laid = kept.size > 0 ? Promise.resolve(cy.fit(undefined, 30)) : this._layout();
    return laid.then(() => {
      this._spread();
      this._separateGroups();
      cy.fit(undefined, 30);
      this._savePositions();
      this.timing.layout = performance.now() - t0 - this.timing.build;
      this.layoutMs = performance.now() - t0;
      return this.layoutMs;
    });
  }

  /** relayout forgets the kept positions and lays the whole graph out afresh (the page's "Lay out" button). */
  relayout() {
    if (!this.cy) return Promise.resolve(0);
    try { window.localStorage.removeItem(STORE); } catch (_) { /* storage refused */ }
    this.gone.clear();
    return this._layout().then(() => { this._spread(); this._separateGroups(); this._savePositions(); });
  }

  // _spread moves each node that lies on another (their centres closer
  // than SPREAD on both axes: the circles overlap) to the nearest free
  // spot on rings of SPREAD around it, in id order so the result is as
  // deterministic as the layout. fcose's draft quality (above 800 nodes:
  // its spectral start without the force pass) puts nodes of long chains
  // on the very same spot, so a namespace of hundreds of workloads showed
  // fewer nodes than it has. Nodes are bucketed in cells of SPREAD: a
  // check looks at the 3 × 3 cells around a spot.
  _spread() {
    const S = SPREAD;
    const cells = new Map();
    const key = (x, y) => `${Math.floor(x / S)},${Math.floor(y / S)}`;
    const clash = (x, y) => {
      for (let i = -1; i <= 1; i++) {
        for (let j = -1; j <= 1; j++) {
          const near = cells.get(key(x + i * S, y + j * S));
          if (near && near.some((q) => Math.abs(x - q.x) < S && Math.abs(y - q.y) < S)) return true;
        }
      }
      return false;
    };
    const put = (p) => {
      const k = key(p.x, p.y);
      if (!cells.has(k)) cells.set(k, []);
      cells.get(k).push(p);
    };
    const moves = [];
    for (const n of this.cy.nodes().not(".group").toArray().sort((a, b) => byId({ id: a.id() }, { id: b.id() }))) {
      let p = { ...n.position() };
      if (clash(p.x, p.y)) {
        let found = null;
        for (let r = 1; !found && r < 1000; r++) {
          for (let i = -r; i <= r && !found; i++) {
            for (let j = -r; j <= r && !found; j++) {
              if (Math.max(Math.abs(i), Math.abs(j)) !== r) continue;
              if (!clash(p.x + i * S, p.y + j * S)) found = { x: p.x + i * S, y: p.y + j * S };
            }
          }
        }
        if (found) { p = found; moves.push([n, p]); }
      }
      put(p);
    }
    if (moves.length) this.cy.batch(() => { for (const [n, p] of moves) n.position(p); });
  }

  // _layout runs fcose over the whole graph under a fixed seed, every node
  // starting at the origin: the same graph (elements in the same order,
  // which setModel keeps by id) is drawn the same way on every load.
  _layout() {
    return new Promise((resolve) => {
      const n = this.cy.nodes().length;
      // From where nodes start on a first load, so that "Lay out again"
      // after drags and reloads draws what a first visit draws.
      this.cy.batch(() => this.cy.nodes().not(".group").positions(() => ({ x: 0, y: 0 })));
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
      withSeed(0x6e616e6f, () => layout.run());
    });
  }

  // _separateGroups moves whole namespace boxes (and the world's) apart
  // where they overlap or come closer than GAP: fcose keeps compound nodes
  // apart only as a force, and nodes placed or dragged later can push a
  // box into another. Only the boxes that overlap move.
  _separateGroups() {
    const cy = this.cy;
    const groups = cy.nodes(".group").sort((a, b) => groupOrder(a.id(), b.id()));
    if (groups.length < 2) return;
    const boxes = groups.map((g) => ({ id: g.id(), ...g.boundingBox({ includeLabels: true }) }));
    const shifts = separate(boxes);
    if (shifts.size === 0) return;
    cy.batch(() => {
      for (const [id, d] of shifts) {
        cy.getElementById(id).children().positions((c) => ({ x: c.position("x") + d.dx, y: c.position("y") + d.dy }));
      }
    });
  }

  // _savePositions keeps every node's position for the next visit, a
  // moment after the last change (localStorage; nothing when refused).
  _savePositions() {
    if (!this.keep) return;
    clearTimeout(this._saveTimer);
    this._saveTimer = setTimeout(() => {
      const o = {};
      let k = 0;
      this.cy.nodes().not(".group").forEach((n) => {
        if (k++ >= STORE_MAX) return;
        const p = n.position();
        o[n.id()] = [Math.round(p.x), Math.round(p.y)];
      });
      for (const [id, p] of this.gone) {
        if (k++ >= STORE_MAX) break;
        o[id] = [Math.round(p.x), Math.round(p.y)];
      }
      try { window.localStorage.setItem(STORE, JSON.stringify(o)); } catch (_) { /* storage full or refused */ }
    }, 300);
  }

  // _placeNew puts a node that arrives after the first layout into its
  // group's box: on the free spot nearest to a node it talks to there (or
  // to the box's centre), else just outside the box's right edge; a node
  // of a new group goes below everything. Nothing else moves (a box that
  // grows into another is pushed away by _separateGroups afterwards).
  _placeNew(n) {
    const cy = this.cy;
    const g = cy.getElementById(parentOf(n));
    const kids = g.nonempty() ? g.children() : cy.collection();
    if (kids.empty()) {
      const bb = cy.nodes().boundingBox();
      return cy.nodes().empty() ? { x: 0, y: 0 } : { x: bb.x1, y: bb.y2 + 3 * GAP };
    }
    const bb = kids.boundingBox();
    let aim = { x: (bb.x1 + bb.x2) / 2, y: (bb.y1 + bb.y2) / 2 };
    for (const l of this.model.links.values()) {
      const other = l.source === n.id ? l.destination : l.destination === n.id ? l.source : null;
      const o = other && kids.getElementById(other);
      if (o && o.nonempty()) { aim = o.position(); break; }
    }
    const step = 45;
    // A spot is free when no node of the group is within step of it on
    // both axes. The group's nodes are bucketed in cells of step, so a
    // spot looks at the 3 × 3 cells around it, not at every node: in a
    // namespace of a thousand workloads the spots of its box times its
    // nodes would be billions of comparisons for a few hundred new nodes.
    const cells = new Map();
    const cell = (x, y) => `${Math.floor(x / step)},${Math.floor(y / step)}`;
    kids.forEach((k) => {
      const q = k.position(), c = cell(q.x, q.y);
      if (!cells.has(c)) cells.set(c, []);
      cells.get(c).push(q);
    });
    const free = (p) => {
      for (let i = -1; i <= 1; i++) {
        for (let j = -1; j <= 1; j++) {
          const near = cells.get(cell(p.x + i * step, p.y + j * step));
          if (near && near.some((q) => Math.abs(p.x - q.x) < step && Math.abs(p.y - q.y) < step)) return false;
        }
      }
      return true;
    };
    let best = null, bestD = Infinity;
    for (let x = bb.x1; x <= bb.x2; x += step) {
      for (let y = bb.y1; y <= bb.y2; y += step) {
        const p = { x, y };
        const d = (x - aim.x) ** 2 + (y - aim.y) ** 2;
        if (d < bestD && free(p)) { best = p; bestD = d; }
      }
    }
    return best || { x: bb.x2 + step, y: aim.y };
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
    // Only elements whose state changes are touched: cytoscape's
    // toggleClass marks every element it is given as changed (a style
    // recomputation and a redraw of each), whether it had the class or not.
    cy.batch(() => {
      cy.edges().forEach((e) => { setHidden(e, !shownLinks.has(e.id())); });
      cy.nodes().forEach((n) => {
        if (n.data("kind") === "group") return;
        setHidden(n, !visible.has(n.id()));
      });
      cy.nodes(".group").forEach((g) => { setHidden(g, g.children().not(".hidden").empty()); });
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
