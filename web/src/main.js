// nanoseg's page: the live graph of a running agent (after a session
// login), or, in a file written by `nanoseg graph --format html`, the same
// drawing of the graph embedded in the file (no API, no actions).

import { API, APIError } from "./api.js";
import { GraphView, colors } from "./graphview.js";
import { decisionText, fromAPI, fromGraphJSON, service } from "./model.js";
import { h, $, clear, table, fmtBytes, fmtTime } from "./dom.js";

const state = {
  api: new API(),
  role: "",
  user: "",
  live: false,
  model: null,
  view: null,
  filter: {},
  panel: null, // {kind: "edge"|"workload"|..., id}
  events: null,
  eventsRetry: 0, // the pending reconnection timer, 0 = none
  eventsDelay: 0, // ms before the next reconnection (doubling, 2 s to 60 s)
  reloads: 0,
};
// For the browser tests and for poking at the page from the console.
window.nanoseg = state;

function operator() { return state.role === "operator"; }

function status(msg, error) {
  const el = $("#status");
  el.textContent = msg || "";
  el.classList.toggle("error", !!error);
}

function fail(err) {
  if (err instanceof APIError && err.status === 401 && state.live) {
    clearHint();
    showLogin("Your session ended: log in again.");
    return;
  }
  status(err.message || String(err), true);
  console.error(err);
}

// ---- boot ----

function boot() {
  const embedded = document.getElementById("nanoseg-graph");
  wireFilters();
  if (embedded) {
    bootStatic(JSON.parse(embedded.textContent));
    return;
  }
  state.live = true;
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#btn-evidence").addEventListener("click", () => showEvidence().catch(fail));
  $("#btn-matrix").addEventListener("click", () => showMatrix($("#f-namespace").value).catch(fail));
  $("#btn-propose").addEventListener("click", () => propose().catch(fail));
  $("#f-window").addEventListener("change", () => loadGraph().catch(fail));
  // Ask for the session only when the server's hint cookie (nanoseg_ui,
  // set at login, cleared at logout) says there may be one: a first visit
  // shows the login form without a request that would answer 401, which
  // the browser logs as an error. A stale hint (the session expired or
  // the agent restarted) still costs one 401; the hint is then dropped.
  if (!hasHint()) { showLogin(""); return; }
  state.api.get("/v1/session").then(startSession, (err) => {
    if (err.status === 401) { clearHint(); showLogin(""); }
    else fail(err);
  });
}

const HINT = "nanoseg_ui";

function hasHint() {
  return document.cookie.split(";").some((c) => c.trim().startsWith(`${HINT}=`));
}

function clearHint() {
  document.cookie = `${HINT}=; Path=/; Max-Age=0; SameSite=Strict`;
}

function bootStatic(g) {
  document.body.classList.add("static");
  document.body.classList.remove("logged-out");
  const m = fromGraphJSON(g);
  state.view = newView();
  state.view.keep = false; // a file of its own: no positions kept between exports
  setModel(m);
}

function newView() {
  return new GraphView($("#graph"), {
    onEdge: (id) => showEdge(id).catch(fail),
    onNode: (id) => showNode(id).catch(fail),
  });
}

// ---- session ----

function showLogin(msg) {
  if (state.events) { state.events.close(); state.events = null; }
  if (state.eventsRetry) { clearTimeout(state.eventsRetry); state.eventsRetry = 0; }
  document.body.classList.add("logged-out");
  $("#login-msg").textContent = msg || "";
  $("#login-token").focus();
}

async function login(ev) {
  ev.preventDefault();
  const token = $("#login-token").value.trim();
  if (!token) { $("#login-msg").textContent = "token: paste a token first"; return; }
  try {
    const s = await state.api.post("/v1/session", { token });
    $("#login-token").value = "";
    await startSession(s);
  } catch (err) {
    $("#login-msg").textContent = err.status === 401 ? "That token was refused." : err.message;
  }
}

async function logout() {
  try { await state.api.del("/v1/session"); } catch (_) { /* gone already */ }
  clearHint();
  state.role = "";
  showLogin("Logged out.");
}

async function startSession(s) {
  state.role = s.role;
  state.user = s.user || "";
  state.api.csrf = s.csrf || "";
  document.body.classList.remove("logged-out");
  document.body.classList.toggle("viewer", !operator());
  $("#role").textContent = s.user ? `${s.user} (${s.role})` : s.role;
  if (!state.view) state.view = newView();
  await loadGraph();
  startEvents();
}

// ---- the graph ----

async function loadGraph() {
  const window = $("#f-window").value;
  let marksFailed = null;
  const [edges, inventory, decisions] = await Promise.all([
    state.api.get("/v1/edges", { window }),
    state.api.get("/v1/inventory"),
    // The marks of ClusterNetworkPolicy decisions are a help, not the
    // graph: a server that cannot give them leaves the edges unmarked,
    // and the status line says so (unmarked must not read as "no edge is
    // decided by a cluster rule").
    state.api.get("/v1/edges/decisions", { window }).catch((err) => { marksFailed = err; return []; }),
  ]);
  state.reloads++;
  await setModel(fromAPI(edges, inventory, decisions));
  const note = marksFailed ? `ClusterNetworkPolicy marks unavailable (${marksFailed.message}): edges are drawn unmarked` : "";
  if (note) status(note, true);
  else if (state.marksNote && $("#status").textContent === state.marksNote) status("");
  state.marksNote = note;
}

async function setModel(m) {
  state.model = m;
  const sel = $("#f-namespace");
  const cur = sel.value;
  // Rebuilt only when the namespaces changed: not under the user's hand.
  if (sel.options.length !== m.namespaces.length + 1 || m.namespaces.some((ns, i) => sel.options[i + 1].value !== ns)) {
    clear(sel).append(h("option", { value: "" }, "all namespaces"), ...m.namespaces.map((ns) => h("option", { value: ns }, ns)));
    sel.value = m.namespaces.includes(cur) ? cur : "";
  }
  state.filter.namespace = sel.value;
  await state.view.setModel(m);
  if (!state.settledAt) state.settledAt = performance.now(); // the first layout's end, for the benchmark
  state.view.applyFilter(state.filter);
  counts();
}

function counts() {
  const c = state.view.counts();
  $("#counts").textContent = `${c.workloads} workloads · ${c.externals} external peers · ${c.edges} edges`;
}

function wireFilters() {
  let timer = 0;
  const apply = () => {
    state.filter = {
      namespace: $("#f-namespace").value,
      workload: $("#f-workload").value.trim().toLowerCase(),
      verdict: $("#f-verdict").value,
      port: $("#f-port").value.trim().toLowerCase(),
      text: $("#f-text").value.trim().toLowerCase(),
    };
    if (!state.view) return;
    state.view.applyFilter(state.filter);
    counts();
  };
  for (const id of ["#f-namespace", "#f-verdict"]) $(id).addEventListener("change", apply);
  for (const id of ["#f-workload", "#f-port", "#f-text"]) {
    $(id).addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 150); });
  }
  $("#fit").addEventListener("click", () => state.view && state.view.fit());
  $("#relayout").addEventListener("click", () => state.view && state.view.relayout().catch(fail));
  $("#panel-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#dialog").open) closePanel(); });
}

// startEvents follows the agent's change feed: each change merges the new
// graph into the drawing (debounced: at most one reload per second). When
// the agent refuses the stream (503: all streams of the role are taken) or
// it ends for good, the page reloads the graph and tries again after a
// backoff (2 s doubling to 60 s), so it polls while it cannot follow.
function startEvents() {
  if (state.events || state.eventsRetry || typeof EventSource === "undefined") return;
  const es = new EventSource("/v1/events");
  state.events = es;
  let timer = 0, pending = new Set();
  es.addEventListener("change", (ev) => {
    let topics = [];
    try { topics = JSON.parse(ev.data).topics || []; } catch (_) { /* an old agent */ }
    for (const t of topics) pending.add(t);
    if (timer) return;
    timer = setTimeout(async () => {
      timer = 0;
      const t = pending;
      pending = new Set();
      state.topics = [...t]; // the last change's topics, for tests and the console
      try {
        if (t.size === 0 || t.has("edges") || t.has("inventory")) await loadGraph();
        // A workload's panel follows its state, but not under an open dialog.
        if (state.panel && state.panel.kind === "workload" && !$("#dialog").open && (t.has("status") || t.has("history") || t.size === 0)) await showWorkload(state.panel.id);
      } catch (err) { fail(err); }
    }, 1000);
  });
  es.addEventListener("error", () => {
    if (es.readyState !== EventSource.CLOSED) {
      $("#live").textContent = "reconnecting…";
      return;
    }
    if (state.events !== es) return; // logged out
    state.events = null;
    state.eventsDelay = Math.min(Math.max(state.eventsDelay * 2, 2000), 60000);
    $("#live").textContent = `not live: retrying in ${Math.round(state.eventsDelay / 1000)} s`;
    state.eventsRetry = setTimeout(() => {
      state.eventsRetry = 0;
      if (document.body.classList.contains("logged-out")) return;
      loadGraph().catch(fail); // poll while the feed is away
      startEvents();
    }, state.eventsDelay);
  });
  es.addEventListener("open", () => { state.eventsDelay = 0; $("#live").textContent = "live"; });
}

// ---- the side panel ----

function openPanel(kind, id, title, ...body) {
  state.panel = { kind, id };
  document.body.classList.remove("panel-wide");
  $("#panel-title").textContent = title;
  clear($("#panel-body")).append(...body);
  document.body.classList.add("panel-open");
  $("#panel").dataset.kind = kind;
}

function closePanel() {
  state.panel = null;
  document.body.classList.remove("panel-open");
  if (state.view) state.view.select("");
}

function section(title, ...children) {
  return h("section", { class: "sec" }, h("h3", {}, title), ...children);
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function splitBar(s) {
  const total = s.allowed + s.auditDenied + s.denied || 1;
  const bar = h("div", { class: "split", title: `${s.allowed} allowed, ${s.auditDenied} audit-denied, ${s.denied} denied` });
  for (const [n, cls] of [[s.allowed, "allow"], [s.auditDenied, "audit-deny"], [s.denied, "deny"]]) {
    if (!n) continue;
    const seg = h("span", { class: cls });
    seg.style.flexGrow = String(n / total); // CSSOM, not an inline style attribute
    bar.append(seg);
  }
  return bar;
}

function nodeLink(id) {
  const n = state.model && state.model.nodes.get(id);
  if (!n || n.kind !== "workload") return id;
  return h("a", { href: "#", class: "wl", "data-workload": id, onclick: (ev) => { ev.preventDefault(); showNode(id).catch(fail); } }, id);
}

async function showEdge(id) {
  const l = state.model.links.get(id);
  if (!l) return;
  state.view.select(id);
  const s = l.split;
  const facts = section("Traffic",
    kv([
      ["from", nodeLink(l.source)], ["to", nodeLink(l.destination)], ["service", service(l)],
      ["flows", `${l.flows}${l.failed ? ` (${l.failed} failed)` : ""}`],
      ["verdicts", `${s.allowed} allowed · ${s.auditDenied} audit-denied · ${s.denied} denied`],
      ["bytes", `${fmtBytes(l.bytesOut)} out · ${fmtBytes(l.bytesIn)} back`],
      ["first seen", fmtTime(l.firstSeen)], ["last seen", fmtTime(l.lastSeen)],
      ...(l.decidedBy ? [["cluster policy", h("span", { id: "edge-cluster", class: "cluster" }, `ClusterNetworkPolicy ${decisionText(l.decidedBy)}`)]] : []),
    ]),
    splitBar(s));
  openPanel("edge", id, `${l.source} → ${l.destination} ${service(l)}`, facts);
  if (!state.live) return;
  const rule = section("Decided by", h("p", { class: "muted" }, "asking the agent…"));
  $("#panel-body").append(rule);
  const d = await state.api.get("/v1/edges/detail", { from: l.source, to: l.destination, port: service(l), window: $("#f-window").value });
  if (!state.panel || state.panel.id !== id) return;
  clear(rule).append(h("h3", {}, "Decided by"),
    d.explain ? explainView(d.explain) : h("p", { class: "muted" }, d.explainError || "no explanation"));
  if ((d.rules || []).length) $("#panel-body").append(section("The rules that allow it, and where they came from", ...d.rules.map(originView)));
  if ((d.denying || []).length) $("#panel-body").append(section("The policies that deny it", ...d.denying.map(originView)));
}

// originView shows one rule of an edge's detail: the policy and rule, the
// revision (or NetworkPolicy record) it is in force at, and the observed
// edges it was inferred from.
function originView(r) {
  const pairs = [["rule", h("span", { class: "rule" }, ruleText(r.rule || {}))], ["direction", r.direction || "—"]];
  if (r.workload) pairs.push(["in force", `${r.workload} in ${r.mode || "observe"}`]);
  if (r.revision) pairs.push(["revision", `${r.revision.number} (${r.revision.origin}, ${fmtTime(r.revision.createdAt)} by ${r.revision.createdBy})`]);
  if (r.networkPolicy) pairs.push(["NetworkPolicy record", `${r.networkPolicy.namespace}/${r.networkPolicy.name} revision ${r.networkPolicy.revision}, ${r.networkPolicy.action} ${fmtTime(r.networkPolicy.at)} by ${r.networkPolicy.by}`]);
  const edges = r.edges || [];
  pairs.push(["from observed edges", edges.length ? h("ul", { class: "origins" }, edges.map((e) => h("li", {}, e.key))) : "—"]);
  return h("div", { class: "origin" }, kv(pairs));
}

function ruleText(r) {
  const p = r.policy || {};
  return `${p.kind || ""} ${p.namespace ? `${p.namespace}/` : ""}${p.name || ""} rule ${r.rule}`.trim();
}

/** clusterRuleText names a ClusterNetworkPolicy rule (policies.ClusterRuleRef) as `policy explain` does. */
function clusterRuleText(c) {
  const p = c.policy || {};
  return `ClusterNetworkPolicy ${p.name || "?"} (${c.tier}, priority ${c.priority}) rule ${c.rule}${c.name ? ` "${c.name}"` : ""}`;
}

/**
 * clusterDecision says how the Admin or Baseline rule of a direction
 * (policies.DirectionEvaluation with clusterRule) decided it: accepted,
 * denied, or audit-denied when the subject is in audit mode.
 */
function clusterDecision(d) {
  const c = d.clusterRule;
  if (c.action === "Accept") return `accepted by ${clusterRuleText(c)}`;
  if (d.action === "audit-deny") return `audit-denied by ${clusterRuleText(c)} (${d.subject || "the endpoint"} is in audit mode: logged as audit-deny, not dropped)`;
  return `denied by ${clusterRuleText(c)}`;
}

/** explainView shows a policies.Evaluation: the action and, per direction, what decided. */
function explainView(ev) {
  const rows = [];
  for (const dir of ["egress", "ingress"]) {
    const d = ev[dir];
    if (!d) continue;
    let why;
    if (d.clusterRule) why = clusterDecision(d);
    else if (d.allowing && d.allowing.length) why = d.allowing.map(ruleText).join(", ");
    else if (d.isolating && d.isolating.length) why = `default deny of ${d.isolating.map((p) => `${p.kind} ${p.namespace ? `${p.namespace}/` : ""}${p.name}`).join(", ")}`;
    else why = "not isolated: allowed";
    if (d.passed && d.passed.length) why += ` (passed on by ${d.passed.map(clusterRuleText).join(", ")})`;
    rows.push([d.direction || dir, d.subject || "", h("span", { class: `verdict ${d.action}` }, d.action), why]);
  }
  return h("div", { class: "explain" },
    h("p", {}, "Now: ", h("strong", { class: `verdict ${ev.action}`, id: "explain-action" }, ev.action || "?")),
    table(["direction", "endpoint", "action", "policy and rule"], rows),
    ev.error ? h("p", { class: "error" }, ev.error) : null);
}

async function showNode(id) {
  const n = state.model.nodes.get(id);
  if (!n) return;
  state.view.select(id);
  if (n.kind === "workload" && state.live) return showWorkload(id);
  const links = [...state.model.links.values()].filter((l) => l.source === id || l.destination === id);
  openPanel("node", id, id,
    section(n.kind === "external" ? "External peer" : "Workload", kv([["name", n.label], ["address", n.addr || "—"]])),
    section("Edges", table(["from", "to", "service", "flows"], links.map((l) => [l.source, l.destination, service(l), String(l.flows)]))));
}

async function showWorkload(id) {
  const d = await state.api.get("/v1/workloads/detail", { workload: id });
  const s = d.status;
  const body = [];
  if (!s) {
    body.push(h("p", { class: "muted" }, "No policy state: the agent has no revision of this workload yet (propose first)."));
  } else {
    const eps = s.endpoints || [];
    const inSync = eps.filter((e) => e.inSync).length;
    body.push(section("State", kv([
      ["mode", h("span", { id: "wl-mode", class: `mode ${s.mode}` }, s.mode)],
      ["effective mode", s.effectiveMode || s.mode],
      ["revision", h("span", { id: "wl-revision" }, String(s.revision))],
      ["since", fmtTime(s.since)],
      ["endpoints in sync", h("span", { id: "wl-insync" }, `${inSync} of ${eps.length}`)],
      ["would deny", String(s.wouldDeny || 0)], ["denied", String(s.denied || 0)],
      ["NetworkPolicies", (s.networkPolicies || []).join(", ") || "—"],
    ])));
  }
  const audited = (s && s.auditedDenies) || [];
  if (audited.length) {
    body.push(section("ClusterNetworkPolicy denies, audited",
      h("p", { class: "warn", id: "wl-audited" }, `${id} is in audit mode: these Deny rules of the cluster administrator are logged as audit-deny and not dropped; promoting it to enforce drops what they deny.`),
      h("ul", {}, audited.map((r) => h("li", {}, r)))));
  }
  // The cluster administrator's rules that decide its observed edges,
  // whatever its mode (the edge panels and marks name them one by one).
  const byRule = new Map();
  for (const l of state.model.links.values()) {
    if (!l.decidedBy || (l.source !== id && l.destination !== id)) continue;
    const k = decisionText(l.decidedBy);
    if (!byRule.has(k)) byRule.set(k, []);
    byRule.get(k).push(`${l.source} → ${l.destination} ${service(l)}`);
  }
  if (byRule.size) {
    body.push(section("ClusterNetworkPolicy rules deciding its edges",
      h("ul", { id: "wl-cluster" }, [...byRule].map(([rule, edges]) => h("li", {}, `${rule}: ${edges.join(", ")}`)))));
  }
  if (operator()) body.push(actions(id, s || { mode: "observe" }));
  if (d.revision) body.push(h("p", { class: "muted" }, `revision ${d.revision.number} in force: ${d.revision.origin}, ${fmtTime(d.revision.createdAt)} by ${d.revision.createdBy}`));
  const rules = d.rules || [];
  body.push(section("Rules, with their kernel hit counters and the edges they came from",
    rules.length ? table(["rule", "dir", "packets", "bytes", "from observed edges"], rules.map((r) => [
      h("td", { class: r.hit ? "" : "unhit" }, r.id), r.direction === "Ingress" ? "in" : "out", String(r.packets || 0), fmtBytes(r.bytes || 0),
      (r.edges || []).map((e) => e.key).join("; ") || "—"]), "grid rules")
      : h("p", { class: "muted" }, "no rules in force"),
    (d.unhit || []).length ? h("p", { class: "warn", id: "wl-unhit" }, `rules without hits: ${d.unhit.join(", ")}`) : null));
  body.push(section("Proposed revision against the active one", proposedView(d.proposed)));
  const breaks = d.wouldBreak || [];
  body.push(section("What enforcing would break",
    breaks.length ? table(["verdict", "from", "to", "service", "attempts"], breaks.map((b) => [b.verdict, b.source, b.destination, `${b.protocol}/${b.port}`, String(b.count)]))
      : h("p", { class: "muted" }, "nothing audit-denied since the last promotion")));
  body.push(section("History", historyView(d.history)));
  openPanel("workload", id, id, ...body);
}

// proposedView shows the proposed revision as a rule diff against the
// one in force, and the agent's diff report.
function proposedView(p) {
  if (!p) return h("p", { class: "muted" }, "the revision in force is the latest");
  const rows = (p.rules || []).map((r) => [h("td", { class: `change ${r.change}` }, r.change), r.id || (r.after || r.before || {}).id || "", ruleSummary(r.before), ruleSummary(r.after)]);
  return h("div", { class: "proposed" },
    h("p", {}, `revision ${p.revision && p.revision.number} proposed; ${p.active ? `revision ${p.active}` : "none"} in force`),
    rows.length ? table(["", "rule", "in force", "proposed"], rows) : h("p", { class: "muted" }, "same rules"),
    p.report ? diffView(p.report) : null);
}

function ruleSummary(r) {
  if (!r) return "—";
  const peers = (r.peers || []).map((x) => JSON.stringify(x)).join(" ");
  const ports = (r.ports || []).map((x) => `${x.protocol || "TCP"}/${x.port}${x.endPort ? `-${x.endPort}` : ""}`).join(", ");
  return `${peers} ${ports}`.trim() || "any";
}

function diffView(d) {
  const list = (items, f) => (items && items.length ? h("ul", {}, items.map((x) => h("li", {}, f(x)))) : h("p", { class: "muted" }, "none"));
  return h("div", { class: "diff" },
    h("h4", {}, "rules added"), list(d.added, ruleText),
    h("h4", {}, "observed edges the proposal would deny"), list(d.denied, (x) => `${x.edge} — ${x.action}, ${x.flows} flows${x.reason ? ` (${x.reason})` : ""}`),
    h("h4", {}, "rules no observed edge used"), list(d.unused, ruleText));
}

function historyView(hist) {
  if (!hist || !hist.length) return h("p", { class: "muted" }, "no promotions");
  return table(["seq", "at", "who", "change", "reason"],
    hist.slice().reverse().map((p) => [String(p.seq), fmtTime(p.at), p.who, `${p.action}: ${p.fromMode || "—"} r${p.fromRevision} → ${p.toMode} r${p.toRevision}`, p.reason]), "grid history");
}

// ---- actions (operators only: a viewer's page has no buttons, and the agent refuses anyway) ----

function actions(id, s) {
  return section("Actions", h("div", { class: "actions" },
    h("button", { id: "act-audit", onclick: () => confirmChange(id, "audit").catch(fail), disabled: s.mode === "audit" }, "Promote to audit…"),
    h("button", { id: "act-enforce", onclick: () => confirmChange(id, "enforce").catch(fail), disabled: s.mode === "enforce" }, "Promote to enforce…"),
    h("button", { id: "act-rollback", onclick: () => confirmChange(id, "rollback").catch(fail) }, "Roll back…")));
}

// confirmChange shows the reachability change of a promotion or rollback
// (the paths it opens and closes: GET /v1/change) and commits it only
// after a reason and a confirmation.
async function confirmChange(id, to) {
  const dlg = $("#dialog");
  const body = clear($("#dialog-body"));
  $("#dialog-title").textContent = to === "rollback" ? `Roll back ${id}` : `Promote ${id} to ${to}`;
  $("#dialog-error").textContent = "";
  $("#dialog-reason").value = "";
  $("#dialog-force-row").hidden = to !== "enforce";
  $("#dialog-force").checked = false;
  const confirm = $("#dialog-confirm");
  confirm.disabled = true;
  body.append(h("p", { class: "muted" }, "computing the reachability change…"));
  dlg.showModal();
  try {
    const change = await state.api.get("/v1/change", to === "rollback" ? { workload: id, action: "rollback" } : { workload: id, to });
    clear(body).append(changeView(to, change || {}));
  } catch (err) {
    clear(body);
    $("#dialog-error").textContent = err.message;
    return;
  }
  const reason = $("#dialog-reason");
  reason.oninput = () => { confirm.disabled = !reason.value.trim(); };
  reason.focus();
  confirm.onclick = async () => {
    const why = reason.value.trim();
    if (!why) { $("#dialog-error").textContent = "reason: required"; return; }
    confirm.disabled = true;
    try {
      const res = to === "rollback"
        ? await state.api.post("/v1/rollback", { workload: id, toRevision: 0, reason: why })
        : await state.api.post("/v1/promote", { workload: id, to, reason: why, force: $("#dialog-force").checked });
      dlg.close();
      const p = res.promotion || {};
      status(res.unchanged ? `${id}: unchanged` : `${id}: ${p.action} recorded as seq ${p.seq} by ${p.who}${res.converged ? "" : " (not converged yet)"}`);
      await showWorkload(id);
    } catch (err) {
      $("#dialog-error").textContent = err.message;
      confirm.disabled = false;
    }
  };
  $("#dialog-cancel").onclick = () => dlg.close();
}

// changeView shows a ChangePreview: what the change does, and the paths it opens and closes.
function changeView(to, change) {
  let what;
  if (to === "rollback") what = h("p", {}, change.noPolicy ? "The rollback removes the workload's policy." : `Back to ${change.mode} revision ${change.revision}.`);
  else if (to === "audit") what = h("p", {}, "Audit blocks nothing: the paths it would close are logged as audit-denied.");
  else what = h("p", { class: "warn" }, "Enforce drops every path it closes.");
  const list = (items) => (items && items.length ? h("ul", {}, items.map((x) => h("li", {}, x))) : h("p", { class: "muted" }, "none"));
  return h("div", { id: "reachability" }, what,
    h("h4", {}, `paths opened (${(change.opened || []).length})`), list(change.opened),
    h("h4", {}, `paths closed (${(change.closed || []).length})`), list(change.closed));
}

async function propose() {
  const r = await state.api.post("/v1/propose");
  const rows = (r.proposals || []).map((p) => [nodeLink(p.workload), String(p.revision), p.new ? "new" : "unchanged"]);
  openPanel("propose", "", "Proposal",
    section("Proposed revisions", table(["workload", "revision", ""], rows)),
    section("Left out", h("p", {}, `${(r.excluded || []).length} denied edges, ${(r.failed || []).length} failed edges, ${(r.skipped || []).length} workloads skipped`)),
    (r.warnings || []).length ? section("Warnings", h("ul", {}, r.warnings.map((w) => h("li", {}, w)))) : null);
}

// ---- evidence ----

async function showEvidence() {
  const out = h("div", { id: "evidence-out" });
  const verify = h("button", { id: "ev-verify", disabled: !operator() }, "Run verify");
  const exp = h("button", { id: "ev-export", disabled: !operator() }, "Export bundle");
  verify.addEventListener("click", async () => {
    verify.disabled = true;
    clear(out).append(h("p", { class: "muted" }, "probing…"));
    try {
      const r = await state.api.post("/v1/verify", {});
      clear(out).append(verifyView(r));
    } catch (err) { clear(out).append(h("p", { class: "error" }, err.message)); }
    verify.disabled = false;
  });
  exp.addEventListener("click", async () => {
    exp.disabled = true;
    clear(out).append(h("p", { class: "muted" }, "exporting…"));
    try {
      const res = await state.api.post("/v1/evidence/export", { window: "1h" }, { raw: true });
      const blob = await res.blob();
      const cd = res.headers.get("Content-Disposition") || "";
      const m = /filename="?([^";]+)"?/.exec(cd);
      const name = m ? m[1] : `nanoseg-evidence-${new Date().toISOString().replace(/[:.]/g, "")}.tar.gz`;
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: name, id: "ev-download" }, `download ${name} (${fmtBytes(blob.size)})`);
      clear(out).append(h("p", {}, a));
      a.click();
      await lastBundle(last);
    } catch (err) { clear(out).append(h("p", { class: "error" }, err.message)); }
    exp.disabled = false;
  });
  const last = h("div", { id: "evidence-last" });
  openPanel("evidence", "", "Evidence", section("Run", h("div", { class: "actions" }, verify, exp), out), section("Last bundle", last));
  await lastBundle(last);
}

function verifyView(r) {
  const bad = (r.results || []).filter((p) => !p.match);
  return h("div", {},
    h("p", { id: "verify-summary" }, `${r.probed} probes (${r.expectedAllowed} expected allowed, ${r.expectedDenied} expected denied), ${r.mismatches} mismatches`),
    bad.length ? table(["from", "to", "service", "expected", "outcome"], bad.map((p) => [p.source, p.destination, `${p.protocol}/${p.port}`, p.expected, `${p.outcome}${p.detail ? ` (${p.detail})` : ""}`])) : null);
}

async function lastBundle(el) {
  let b;
  try {
    // optional=1: 200 {"exported": false} before the first export instead
    // of a 404 the browser would log as an error (docs/api.md).
    b = await state.api.get("/v1/evidence/last", { optional: 1 });
  } catch (err) {
    clear(el).append(h("p", { class: "error" }, err.message));
    return;
  }
  if (b && b.exported === false) {
    clear(el).append(h("p", { class: "muted" }, "no bundle exported yet"));
    return;
  }
  clear(el).append(summaryView(b));
}

// summaryView shows a JSON object as nested key/value lists.
function summaryView(v) {
  if (v === null || typeof v !== "object") return document.createTextNode(String(v));
  if (Array.isArray(v)) return h("ul", {}, v.slice(0, 50).map((x) => h("li", {}, summaryView(x))));
  return kv(Object.entries(v).map(([k, x]) => [k, summaryView(x)]));
}

// ---- matrix ----

async function showMatrix(ns) {
  const m = await state.api.get("/v1/matrix", ns ? { namespace: ns } : {});
  const explainOut = h("div", { id: "matrix-explain" }, h("p", { class: "muted" }, "click a cell"));
  const ports = m.ports || [];
  const sel = h("select", { id: "matrix-port", "aria-label": "port" }, ports.map((p) => h("option", { value: p }, p)));
  const holder = h("div", {});
  const draw = () => clear(holder).append(matrixView(m, sel.value, explainOut));
  sel.addEventListener("change", draw);
  const legend = h("p", { class: "muted", id: "matrix-legend" }, "✓ allow · ✗ deny · ~ audit-deny; * decided by an Admin ClusterNetworkPolicy rule, + by a Baseline one");
  openPanel("matrix", ns, `Matrix of ${ns || "every namespace"}`, h("p", {}, "port ", sel), holder, legend, section("Cell", explainOut));
  document.body.classList.add("panel-wide");
  draw();
}

function matrixView(m, port, explainOut) {
  const ws = m.workloads || [];
  const cells = new Map();
  for (const c of m.cells || []) if (`${c.port}/${c.protocol}` === port) cells.set(`${c.from}>${c.to}`, c);
  const mark = { allow: "✓", deny: "✗", "audit-deny": "~" };
  // As policy matrix: * an Admin ClusterNetworkPolicy rule decided, + a Baseline one.
  const tierMark = { Admin: "*", Baseline: "+" };
  const head = h("tr", {}, h("th", {}, "from \\ to"), ws.map((w) => h("th", {}, w)));
  const rows = ws.map((from) => h("tr", {}, h("th", {}, from), ws.map((to) => {
    const c = cells.get(`${from}>${to}`);
    if (!c) return h("td", { class: "cell" }, "");
    return h("td", {
      class: `cell ${c.action}`, "data-from": from, "data-to": to, "data-tier": c.tier || "", title: c.reason || "",
      onclick: () => clear(explainOut).append(h("p", { id: "matrix-reason" }, `${from} → ${to} ${port}: ${c.reason || c.action}`), c.explain ? explainView(c.explain) : null),
    }, `${mark[c.action] || c.action}${tierMark[c.tier] || ""}`);
  })));
  return h("table", { class: "matrix", id: "matrix" }, h("thead", {}, head), h("tbody", {}, rows));
}

document.addEventListener("DOMContentLoaded", boot);
export { colors };
