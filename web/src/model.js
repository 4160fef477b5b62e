// The page's graph model: one shape for the live page (built from the API's
// /v1/edges and /v1/inventory answers) and the static export (the graph
// package's JSON form, embedded in the file). Nodes are workloads (parent:
// their namespace), external peers (parent: the world); links are merged per
// source, destination, protocol and port, with their verdict split.

/** The id of a peer of a model.Edge: "ns/workload", or the external's name or address. */
export function peerID(p) {
  if (!p.external) return `${p.namespace}/${p.workload}`;
  return p.name || p.addr || "unknown";
}

/**
 * split divides an edge's flows as graph.Link.Split does: denied and
 * audit-denied from its verdict counts, allowed the rest of its flows
 * (never below zero).
 */
export function split(flows, v) {
  v = v || {};
  const auditDenied = v.auditDenied || 0, denied = v.denied || 0;
  return { allowed: Math.max(flows - auditDenied - denied, 0), auditDenied, denied };
}

/**
 * dominant is the verdict of the largest share of the split, the more
 * severe on a tie (graph.Link.Dominant), with "allow" for allowed and
 * observed alike: an edge of 614 allowed and 2 denied flows is "allow".
 */
export function dominant(s) {
  if (s.denied > 0 && s.denied >= s.allowed && s.denied >= s.auditDenied) return "deny";
  if (s.auditDenied > 0 && s.auditDenied >= s.allowed) return "audit-deny";
  return "allow";
}

export function linkID(source, destination, protocol, port) {
  return `${source}>${destination}|${protocol}/${port || 0}`;
}

function emptyLink(source, destination, protocol, port) {
  return {
    id: linkID(source, destination, protocol, port), source, destination, protocol, port: port || 0,
    flows: 0, failed: 0, bytesOut: 0, bytesIn: 0, firstSeen: "", lastSeen: "",
    verdicts: { observed: 0, allowed: 0, auditDenied: 0, denied: 0 },
  };
}

function addTraffic(l, e) {
  l.flows += e.flows || 0;
  l.failed += e.failed || 0;
  l.bytesOut += e.bytesOut || 0;
  l.bytesIn += e.bytesIn || 0;
  const v = e.verdicts || {};
  for (const k of ["observed", "allowed", "auditDenied", "denied"]) l.verdicts[k] += v[k] || 0;
  if (e.firstSeen && !e.firstSeen.startsWith("0001") && (!l.firstSeen || e.firstSeen < l.firstSeen)) l.firstSeen = e.firstSeen;
  if (e.lastSeen && (!l.lastSeen || e.lastSeen > l.lastSeen)) l.lastSeen = e.lastSeen;
}

function workloadNode(ns, workload) {
  return { id: `${ns}/${workload}`, kind: "workload", namespace: ns, workload, label: workload };
}

function externalNode(id, name, addr) {
  return { id, kind: "external", name: name || "", addr: addr || "", label: name || addr || id };
}

/**
 * decision is the page's form of the ClusterNetworkPolicy rule that decides
 * a link (graph.Decision's JSON: tier, policy, priority, rule, name,
 * action), with audited: a Deny logged as audit-deny, not dropped.
 */
function decision(d, audited) {
  return { tier: d.tier, policy: d.policy, priority: d.priority, rule: d.rule, name: d.name || "", action: d.action, audited: !!audited };
}

/** decisionText is "Admin guard-db (priority 7) ingress-0 "no-intruder": Deny" (graph.Decision.String). */
export function decisionText(d) {
  return `${d.tier} ${d.policy} (priority ${d.priority}) ${d.rule}${d.name ? ` "${d.name}"` : ""}: ${d.action}${d.audited ? " (audit mode: logged, not dropped)" : ""}`;
}

/**
 * fromAPI builds the model from /v1/edges (model.Edge list), /v1/inventory
 * (endpoints: every declared workload is a node, with or without edges)
 * and /v1/edges/decisions (the edges a ClusterNetworkPolicy rule decides;
 * optional).
 */
export function fromAPI(edges, inventory, decisions) {
  const nodes = new Map();
  const links = new Map();
  for (const ep of inventory || []) {
    if (ep.namespace && ep.workload) {
      const n = workloadNode(ep.namespace, ep.workload);
      if (!nodes.has(n.id)) nodes.set(n.id, n);
    }
  }
  const addPeer = (p) => {
    const id = peerID(p);
    if (!nodes.has(id)) nodes.set(id, p.external ? externalNode(id, p.name, p.addr) : workloadNode(p.namespace, p.workload));
    return id;
  };
  for (const e of edges || []) {
    const s = addPeer(e.source), d = addPeer(e.destination);
    const id = linkID(s, d, e.protocol, e.port);
    let l = links.get(id);
    if (!l) links.set(id, (l = emptyLink(s, d, e.protocol, e.port)));
    addTraffic(l, e);
  }
  for (const d of decisions || []) {
    const l = links.get(linkID(peerID(d.source), peerID(d.destination), d.protocol, d.port));
    const r = d.rule || {};
    if (l && !l.decidedBy) l.decidedBy = decision({ ...r, policy: (r.policy || {}).name }, d.audited);
  }
  return finish(nodes, links);
}

/** fromGraphJSON builds the model from the graph package's JSON form (graph.Graph). */
export function fromGraphJSON(g) {
  const nodes = new Map();
  const links = new Map();
  for (const n of g.nodes || []) {
    nodes.set(n.id, n.kind === "external" ? externalNode(n.id, n.name, n.addr) : { ...workloadNode(n.namespace, n.workload), id: n.id });
  }
  for (const e of g.edges || []) {
    const id = linkID(e.source, e.destination, e.protocol, e.port);
    let l = links.get(id);
    if (!l) links.set(id, (l = emptyLink(e.source, e.destination, e.protocol, e.port)));
    addTraffic(l, e);
    if (e.decidedBy && !l.decidedBy) l.decidedBy = decision(e.decidedBy, e.decidedBy.audited);
  }
  return finish(nodes, links);
}

function finish(nodes, links) {
  for (const l of links.values()) {
    l.split = split(l.flows, l.verdicts);
    l.dominant = dominant(l.split);
    l.label = label(l);
    l.search = `${l.source} ${l.destination} ${l.protocol}/${l.port}${l.decidedBy ? ` ${l.decidedBy.policy}` : ""}`.toLowerCase();
  }
  const namespaces = [...new Set([...nodes.values()].filter((n) => n.kind === "workload").map((n) => n.namespace))].sort();
  return { nodes, links, namespaces };
}

/** service is "TCP/5432", or the protocol alone without a port. */
export function service(l) {
  return l.port ? `${l.protocol}/${l.port}` : l.protocol;
}

/** mark is "*" for a link an Admin ClusterNetworkPolicy rule decides, "+" for Baseline, "" otherwise (policy matrix's marks). */
export function mark(l) {
  if (!l.decidedBy) return "";
  return l.decidedBy.tier === "Admin" ? "*" : "+";
}

/**
 * label is the edge's text: "TCP/5432 · 616 (614 ok 2 denied)", with
 * " *" (Admin) or " +" (Baseline) when a ClusterNetworkPolicy rule decides it.
 */
export function label(l) {
  const s = l.split;
  const parts = [`${service(l)} · ${l.flows}`];
  if (s.auditDenied || s.denied) {
    parts.push(`(${s.allowed} ok`);
    if (s.auditDenied) parts.push(`${s.auditDenied} audit`);
    if (s.denied) parts.push(`${s.denied} denied`);
    parts[parts.length - 1] += ")";
  }
  if (l.decidedBy) parts.push(mark(l));
  return parts.join(" ");
}

/**
 * keep reports whether the filter f keeps link l between nodes a and b.
 * f: {namespace, workload, verdict, port, text}; empty fields keep all.
 * verdict is allow, audit-deny or deny (a share of the flows), or admin or
 * baseline (a ClusterNetworkPolicy rule of that tier decides the link).
 */
export function keepLink(f, l, a, b) {
  if (f.namespace && a.namespace !== f.namespace && b.namespace !== f.namespace) return false;
  if (f.workload && !a.id.toLowerCase().includes(f.workload) && !b.id.toLowerCase().includes(f.workload)) return false;
  if (f.verdict) {
    const s = l.split;
    if (f.verdict === "allow" && !s.allowed) return false;
    if (f.verdict === "audit-deny" && !s.auditDenied) return false;
    if (f.verdict === "deny" && !s.denied) return false;
    if (f.verdict === "admin" && !(l.decidedBy && l.decidedBy.tier === "Admin")) return false;
    if (f.verdict === "baseline" && !(l.decidedBy && l.decidedBy.tier === "Baseline")) return false;
  }
  if (f.port && String(l.port) !== f.port && service(l).toLowerCase() !== f.port) return false;
  if (f.text && !l.search.includes(f.text)) return false;
  return true;
}

/** keepNode reports whether the filter keeps a node that has no kept link. */
export function keepNode(f, n) {
  if (f.verdict || f.port) return false;
  if (f.namespace && n.namespace !== f.namespace) return false;
  if (f.workload && !n.id.toLowerCase().includes(f.workload)) return false;
  if (f.text && !n.id.toLowerCase().includes(f.text)) return false;
  return true;
}
