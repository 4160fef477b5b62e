// nanoseg's page: the live graph of a running agent (after a session
// login), or, in a file written by `nanoseg graph --format html`, the same
// drawing of the graph embedded in the file (no API, no actions).

import { API, APIError } from "./api.js";
import { GraphView, colors } from "./graphview.js";
import { fromAPI, fromGraphJSON, service } from "./model.js";
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
    showLogin("Your session ended: log in again.");
    return;
  }
  status(err.message || String(err), true);
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
  state.api.get("/v1/session").then(startSession, (err) => {
    if (err.status === 401) showLogin("");
    else fail(err);
  });
}

function bootStatic(g) {
  document.body.classList.add("static");
  document.body.classList.remove("logged-out");
  const m = fromGraphJSON(g);
  state.view = newView();
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
  document.body.classList.add("logged-out");
  $("#login-msg").textContent = msg || "";
  $("#login-token").focus();
}

async function login(ev) {
  ev.preventDefault();
  const token = $("#login-token").value.trim();
  if (!token) { $("#login-msg").textContent = "token: paste the agent's token"; return; }
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
  const [edges, inventory] = await Promise.all([
    state.api.get("/v1/edges", { window }),
    state.api.get("/v1/inventory"),
  ]);
  state.reloads++;
  await setModel(fromAPI(edges, inventory));
  status("");
}

async function setModel(m) {
  state.model = m;
  const sel = $("#f-namespace");
  const cur = sel.value;
  clear(sel).append(h("option", { value: "" }, "all namespaces"), ...m.namespaces.map((ns) => h("option", { value: ns }, ns)));
  sel.value = m.namespaces.includes(cur) ? cur : "";
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
  $("#panel-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#dialog").open) closePanel(); });
}

// startEvents follows the agent's change feed: each change merges the new
// graph into the drawing (debounced: at most one reload per second).
function startEvents() {
  if (state.events || typeof EventSource === "undefined") return;
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
      try {
        await loadGraph();
        if (state.panel && state.panel.kind === "workload" && (t.has("status") || t.has("history") || t.size === 0)) await showWorkload(state.panel.id);
      } catch (err) { fail(err); }
    }, 1000);
  });
  es.addEventListener("error", () => {
    $("#live").textContent = es.readyState === EventSource.CLOSED ? "not live" : "reconnecting…";
  });
  es.addEventListener("open", () => { $("#live").textContent = "live"; });
}

// ---- the side panel ----

function openPanel(kind, id, title, ...body) {
  state.panel = { kind, id };
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

function explainAddr(id) {
  const n = state.model.nodes.get(id);
  if (n && n.kind === "external") return n.addr || n.name || id;
  return id;
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
    ]),
    splitBar(s));
  openPanel("edge", id, `${l.source} → ${l.destination} ${service(l)}`, facts);
  if (!state.live) return;
  const port = l.port ? `${l.port}/${l.protocol}` : l.protocol;
  const rule = section("Decided by", h("p", { class: "muted" }, "asking the agent…"));
  $("#panel-body").append(rule);
  let detail = null;
  try {
    detail = await state.api.get("/v1/edges/detail", { from: l.source, to: explainAddr(l.destination), port });
  } catch (err) {
    if (err.status !== 404) throw err;
  }
  if (!state.panel || state.panel.id !== id) return;
  const ev = detail ? detail.explain || detail.evaluation || detail : await state.api.get("/v1/explain", { from: l.source, to: explainAddr(l.destination), port });
  if (!state.panel || state.panel.id !== id) return;
  clear(rule).append(h("h3", {}, "Decided by"), explainView(ev));
  if (detail) rule.append(edgeDetailView(detail));
}

function ruleText(r) {
  const p = r.policy || {};
  return `${p.kind || ""} ${p.namespace ? `${p.namespace}/` : ""}${p.name || ""} rule ${r.rule}`.trim();
}

/** explainView shows a policies.Evaluation: the action and, per direction, what decided. */
function explainView(ev) {
  const rows = [];
  for (const dir of ["egress", "ingress"]) {
    const d = ev[dir];
    if (!d) continue;
    let why;
    if (d.allowing && d.allowing.length) why = d.allowing.map(ruleText).join(", ");
    else if (d.isolating && d.isolating.length) why = `default deny of ${d.isolating.map((p) => `${p.kind} ${p.namespace ? `${p.namespace}/` : ""}${p.name}`).join(", ")}`;
    else why = "not isolated: allowed";
    rows.push([d.direction || dir, d.subject || "", h("span", { class: `verdict ${d.action}` }, d.action), why]);
  }
  return h("div", { class: "explain" },
    h("p", {}, "Now: ", h("strong", { class: `verdict ${ev.action}`, id: "explain-action" }, ev.action || "?")),
    table(["direction", "endpoint", "action", "policy and rule"], rows),
    ev.error ? h("p", { class: "error" }, ev.error) : null);
}

// edgeDetailView shows what /v1/edges/detail adds to explain: the revision
// each rule came from and the observed edges that produced it.
function edgeDetailView(d) {
  const out = [];
  for (const r of d.rules || []) {
    out.push(kv([
      ["rule", ruleText(r)], ["revision", r.revision ? String(r.revision) : "—"],
      ["from observed edges", (r.sourceEdges || r.edges || []).map((e) => (typeof e === "string" ? e : `${e.source} → ${e.destination} ${e.protocol}/${e.port}`)).join("; ") || "—"],
    ]));
  }
  return h("div", { class: "rules" }, out);
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
  const [st, history, diff] = await Promise.all([
    state.api.get("/v1/status"),
    state.api.get("/v1/history", { workload: id }),
    state.api.get("/v1/diff", { workload: id }).catch((err) => ({ error: err.message })),
  ]);
  const s = st.find((x) => x.workload === id);
  const body = [];
  if (!s) {
    body.push(h("p", { class: "muted" }, "No policy state: the agent has no revision of this workload yet (propose first)."));
  } else {
    const inSync = (s.endpoints || []).filter((e) => e.inSync).length;
    body.push(section("State", kv([
      ["mode", h("span", { id: "wl-mode", class: `mode ${s.mode}` }, s.mode)],
      ["effective mode", s.effectiveMode || s.mode],
      ["revision", h("span", { id: "wl-revision" }, String(s.revision))],
      ["since", fmtTime(s.since)],
      ["endpoints in sync", `${inSync} of ${(s.endpoints || []).length}`],
      ["would deny", String(s.wouldDeny || 0)], ["denied", String(s.denied || 0)],
      ["NetworkPolicies", (s.networkPolicies || []).join(", ") || "—"],
    ])));
    if (operator()) body.push(actions(id, s));
    const hits = s.ruleHits || [];
    body.push(section("Rules and their kernel hit counters",
      hits.length ? table(["rule", "packets", "bytes"], hits.map((r) => [r.ruleID, String(r.packets), fmtBytes(r.bytes)])) : h("p", { class: "muted" }, "no rule has counters"),
      hits.filter((r) => !r.packets).length ? h("p", { class: "warn" }, `without hits: ${hits.filter((r) => !r.packets).map((r) => r.ruleID).join(", ")}`) : null));
    const breaks = s.breaks || [];
    body.push(section("What enforcing would break",
      breaks.length ? table(["verdict", "from", "to", "service", "attempts"], breaks.map((b) => [b.verdict, b.source, b.destination, `${b.protocol}/${b.port}`, String(b.count)]))
        : h("p", { class: "muted" }, "nothing denied or audit-denied since the promotion")));
  }
  body.push(section("Proposed revision against the active one", diffView(diff)));
  body.push(section("History", historyView(history)));
  openPanel("workload", id, id, ...body);
}

function diffView(d) {
  if (d.error) return h("p", { class: "error" }, d.error);
  const list = (items, f) => (items && items.length ? h("ul", {}, items.map((x) => h("li", {}, f(x)))) : h("p", { class: "muted" }, "none"));
  return h("div", { class: "diff" },
    h("h4", {}, "paths opened (rules added)"), list(d.added, ruleText),
    h("h4", {}, "paths closed (observed edges the policy would deny)"), list(d.denied, (x) => `${x.edge} — ${x.action}, ${x.flows} flows${x.reason ? ` (${x.reason})` : ""}`),
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
// (paths opened and closed, from the agent's diff) and commits it only
// after a reason and a confirmation.
async function confirmChange(id, to) {
  const dlg = $("#dialog");
  const body = clear($("#dialog-body"));
  $("#dialog-title").textContent = to === "rollback" ? `Roll back ${id}` : `Promote ${id} to ${to}`;
  $("#dialog-error").textContent = "";
  $("#dialog-reason").value = "";
  $("#dialog-force-row").hidden = to !== "enforce";
  $("#dialog-force").checked = false;
  body.append(h("p", { class: "muted" }, "computing the reachability change…"));
  dlg.showModal();
  const [diff, hist] = await Promise.all([
    state.api.get("/v1/diff", { workload: id }).catch((err) => ({ error: err.message })),
    state.api.get("/v1/history", { workload: id }),
  ]);
  clear(body);
  if (to === "rollback") {
    const last = hist.length ? hist[hist.length - 1] : null;
    body.append(h("p", {}, last ? `Undoes seq ${last.seq}: back to ${last.fromMode || "observe"} revision ${last.fromRevision} (from ${last.toMode} revision ${last.toRevision}).` : "Nothing to undo."));
  } else if (to === "audit") {
    body.append(h("p", {}, "Audit blocks nothing: the paths below that would close are logged as audit-denied."));
  } else {
    body.append(h("p", { class: "warn" }, "Enforce drops every path below that would close."));
  }
  body.append(h("div", { id: "reachability" }, diffView(diff)));
  const reason = $("#dialog-reason");
  const confirm = $("#dialog-confirm");
  confirm.disabled = true;
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
  const probes = r.probes || r.results || [];
  const mism = r.mismatches || [];
  return h("div", {},
    h("p", { id: "verify-summary" }, `${probes.length} probes, ${mism.length} mismatches`),
    mism.length ? table(["from", "to", "port", "predicted", "observed"], mism.map((m) => [m.from || m.source, m.to || m.destination, String(m.port), m.predicted || m.expected, m.observed || m.outcome])) : null);
}

async function lastBundle(el) {
  let b;
  try {
    b = await state.api.get("/v1/evidence/last");
  } catch (err) {
    clear(el).append(h("p", { class: "muted" }, err.status === 404 ? "no bundle exported yet" : err.message));
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
  if (!ns) ns = state.model.namespaces[0] || "";
  const m = await state.api.get("/v1/matrix", { namespace: ns });
  const explainOut = h("div", { id: "matrix-explain" });
  openPanel("matrix", ns, `Matrix of ${ns}`, matrixView(m, explainOut), section("Cell", explainOut));
  document.body.classList.add("panel-wide");
}

function matrixView(m, explainOut) {
  const rows = m.rows || m.sources || [];
  const cols = m.columns || m.destinations || [];
  const cells = m.cells || [];
  const head = h("tr", {}, h("th", {}, "from \\ to"), cols.map((c) => h("th", {}, c.label || c.name || c)));
  const body = rows.map((r, i) => h("tr", {}, h("th", {}, r.label || r.name || r), cols.map((c, j) => {
    const cell = (cells[i] || [])[j] || {};
    const td = h("td", { class: `cell ${cell.action || ""}`, "data-from": r.name || r, "data-to": c.name || c, title: cell.port || "" }, cell.action === "allow" ? "✓" : cell.action === "deny" ? "✗" : cell.action === "audit-deny" ? "~" : "");
    td.addEventListener("click", async () => {
      clear(explainOut).append(h("p", { class: "muted" }, "…"));
      try {
        const ev = cell.explain || await state.api.get("/v1/explain", { from: r.name || r, to: c.name || c, port: cell.port || "" });
        clear(explainOut).append(h("p", {}, `${r.name || r} → ${c.name || c} ${cell.port || ""}`), explainView(ev));
      } catch (err) { clear(explainOut).append(h("p", { class: "error" }, err.message)); }
    });
    return td;
  })));
  return h("table", { class: "matrix", id: "matrix" }, h("thead", {}, head), h("tbody", {}, body));
}

document.addEventListener("DOMContentLoaded", boot);
export { colors };
