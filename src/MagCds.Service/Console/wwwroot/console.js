// MagCds console: plain DOM code, no framework. Every piece of data comes from the service's own endpoints; text is
// always inserted with textContent, except card details, which the server renders from markdown with raw HTML off.
"use strict";

const state = { key: sessionStorage.getItem("magcds-key") || "", samples: [], lastTrends: [] };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- access -------------------------------------------------------------------------------------------------------

function authHeaders() {
  if (!state.key) return {};
  // A JWT (three base64url parts, the first a JSON header) is a bearer token; anything else an API key.
  return /^ey[\w-]+\.[\w-]+\.[\w-]*$/.test(state.key) ? { Authorization: "Bearer " + state.key } : { "X-API-Key": state.key };
}

async function api(path, options = {}) {
  const sent = state.key;
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (response.status === 401 || response.status === 403) {
    // A refused key is not kept for the next page load (only the key this request carried: an answer to a request
    // sent before a key was entered says nothing about it).
    if (sent && sessionStorage.getItem("magcds-key") === sent) sessionStorage.removeItem("magcds-key");
    showAccess(response.status === 401 ? "This view needs an admin API key or token." : "This key or token is not allowed to use the console (admin needed).");
    throw new Error("access");
  }
  return response;
}

function showAccess(message) {
  $("access").hidden = false;
  $("access-message").textContent = message;
  $("key").focus();
}

$("access").addEventListener("submit", (e) => {
  e.preventDefault();
  state.key = $("key").value.trim();
  sessionStorage.setItem("magcds-key", state.key);
  $("access").hidden = true;
  $("access-message").textContent = "";
  loadSamples();
  const current = document.querySelector("nav button[aria-pressed=true]").dataset.view;
  if (current === "operations") loadOperations();
});

// ---- navigation ---------------------------------------------------------------------------------------------------

function show(view) {
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "view-" + view;
  if (view === "operations") loadOperations();
  if (view === "trend") drawTrends(state.lastTrends);
}
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));

// ---- knowledge ----------------------------------------------------------------------------------------------------

function sources(documentation) {
  if (!documentation || documentation.length === 0) return null;
  const list = el("ul", { class: "sources" });
  for (const d of documentation) list.append(el("li", {}, el("a", { href: d.url, rel: "noreferrer" , text: "[" + d.label + "]" }), " " + (d.citation || "")));
  return el("div", {}, el("p", { class: "muted", text: "Sources" }), list);
}

function knowledgeAction(a, level) {
  const box = el("div", { class: level <= 4 ? "kcat" : "", "data-action": a.id || "" });
  box.append(el("h" + Math.min(level, 6), { text: a.title || a.id }));
  if (a.textEquivalent) box.append(el("p", { class: "muted", text: a.textEquivalent }));
  if (a.description) box.append(el("p", { class: "guidance", text: a.description }));
  const s = sources(a.documentation);
  if (s) box.append(s);
  for (const child of a.action || []) box.append(knowledgeAction(child, level + 1));
  return box;
}

async function loadKnowledge() {
  const response = await fetch("/fhir/PlanDefinition/magcds-knowledge?_format=json");
  const plan = await response.json();
  $("version").textContent = "Knowledge " + plan.version;
  const root = $("knowledge");
  root.textContent = "";
  root.append(el("p", { text: plan.description }), el("p", { class: "muted", text: plan.usage }));
  for (const a of plan.action) root.append(knowledgeAction(a, 3));
  root.append(el("h3", { text: "References" }));
  const refs = el("ol");
  for (const r of plan.relatedArtifact) refs.append(el("li", {}, el("strong", { text: r.label + ": " }), r.citation + " ", el("a", { href: r.url, rel: "noreferrer", text: r.url })));
  root.append(refs);
}

// ---- try it -------------------------------------------------------------------------------------------------------

async function loadSamples() {
  try {
    const response = await api("/admin/console/samples");
    state.samples = await response.json();
  } catch { return; }
  const box = $("samples");
  const trendBox = $("trend-samples");
  box.textContent = "";
  trendBox.textContent = "";
  for (const s of state.samples) {
    box.append(el("button", { type: "button", text: s.name, onclick: () => { $("input").value = s.body; } }));
    if (s.body.includes('"history"') || s.body.includes('"hook"'))
      trendBox.append(el("button", { type: "button", text: s.name, onclick: async () => { $("input").value = s.body; await run(); show("trend"); } }));
  }
}

$("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) $("input").value = await file.text();
});

function codeTabs(item) {
  const pre = el("pre", { tabindex: "0" }, item.json);
  const tabs = el("div", { class: "tabs", role: "group", "aria-label": "Format" });
  for (const [name, text] of [["JSON", item.json], ["XML", item.xml]]) {
    if (!text) continue;
    tabs.append(el("button", {
      type: "button", "aria-pressed": String(name === "JSON"), text: name,
      onclick: (e) => { pre.textContent = text; for (const b of tabs.children) b.setAttribute("aria-pressed", String(b === e.target)); },
    }));
  }
  return el("div", { class: "resource", "data-type": item.resourceType }, el("strong", { text: item.resourceType + "/" + (item.id || "") }), tabs, pre);
}

/** Card detail HTML is rendered by the server with raw HTML disabled; links other than http(s) are dropped anyway. */
function safeHtml(html) {
  const box = el("div", { class: "detail" });
  box.innerHTML = html;
  for (const a of box.querySelectorAll("a")) {
    if (!/^https?:/i.test(a.getAttribute("href") || "")) a.replaceWith(document.createTextNode(a.textContent));
    else { a.rel = "noreferrer"; a.target = "_blank"; }
  }
  return box;
}

function renderCard(card, html) {
  const box = el("article", { class: "card indicator-" + card.indicator, "data-indicator": card.indicator },
    el("div", { class: "indicator", text: card.indicator }),
    el("p", { class: "summary", text: card.summary }),
    safeHtml(html),
    el("p", { class: "source" }, "Source: ", card.source.url ? el("a", { href: card.source.url, rel: "noreferrer", text: card.source.label }) : card.source.label));
  if (card.links && card.links.length) {
    const links = el("ul", { class: "source" });
    for (const l of card.links) links.append(el("li", {}, el("a", { href: l.url, rel: "noreferrer", target: "_blank", text: l.label })));
    box.append(links);
  }
  for (const s of card.suggestions || [])
    box.append(el("p", { class: "suggestion" }, el("button", { type: "button", disabled: "", text: s.label }),
      s.actions.map((a) => a.type + " " + (a.resource ? a.resource.resourceType : "") + ": " + a.description).join("; ")));
  return box;
}

async function run() {
  const status = $("try-status");
  status.classList.remove("error");
  status.textContent = "Evaluating…";
  let answer;
  try {
    const response = await api("/admin/console/try", { method: "POST", headers: { "Content-Type": "application/json" }, body: $("input").value });
    answer = await response.json();
  } catch (e) {
    if (e.message !== "access") { status.textContent = "The service did not answer: " + e.message; status.classList.add("error"); }
    return;
  }
  const kind = answer.kind === "cds-hooks" ? "CDS Hooks request" : answer.kind === "fhir" ? "FHIR message ($mag-evaluate)" : "refused";
  status.textContent = kind + ": HTTP " + answer.status + ", " + answer.cds.cards.length + " card(s), " + answer.resources.length + " resource(s).";
  if (answer.status >= 400) status.classList.add("error");

  const cards = $("cards");
  cards.textContent = "";
  if (answer.cds.cards.length === 0) cards.append(el("p", { class: "muted", text: "No card: an EHR would show nothing (the result needs no attention, or nothing was evaluated)." }));
  answer.cds.cards.forEach((c, i) => cards.append(renderCard(c, answer.cardDetailHtml[i])));

  const resources = $("resources");
  resources.textContent = "";
  if (answer.resources.length === 0) resources.append(el("p", { class: "muted", text: "None." }));
  for (const r of answer.resources) resources.append(codeTabs(r));

  const outcome = $("outcome");
  outcome.textContent = "";
  if (answer.outcome) {
    const issues = JSON.parse(answer.outcome.json).issue || [];
    const table = el("table", { class: "data" }, el("thead", {}, el("tr", {}, el("th", { text: "severity" }), el("th", { text: "code" }), el("th", { text: "details" }))));
    const body = el("tbody");
    for (const i of issues) {
      const code = (i.details && i.details.coding && i.details.coding[0] && i.details.coding[0].code) || i.code;
      body.append(el("tr", {}, el("td", { text: i.severity }), el("td", { text: code }), el("td", { text: (i.details && i.details.text) || i.diagnostics || "" })));
    }
    table.append(body);
    outcome.append(table, codeTabs(answer.outcome));
  } else outcome.append(el("p", { class: "muted", text: "None (a CDS Hooks answer carries no OperationOutcome)." }));

  state.lastTrends = answer.trends;
}
$("run").addEventListener("click", run);

// ---- trend chart --------------------------------------------------------------------------------------------------

function drawTrends(trends) {
  const root = $("trend");
  root.textContent = "";
  if (!trends || trends.length === 0) { root.append(el("p", { class: "muted", text: "No numeric result evaluated yet." })); return; }
  for (const t of trends) root.append(trendChart(t));
}

function trendChart(t) {
  const W = 760, H = 340, left = 70, right = 70, top = 20, bottom = 50;
  const points = t.points.filter((p) => p.value !== null && p.date !== "date unknown");
  const dates = points.map((p) => Date.parse(p.date));
  const tMin = Math.min(...dates), tMax = Math.max(...dates);
  const span = tMax - tMin || 86400000 * 30;
  const x = (d) => left + ((d - tMin) / span) * (W - left - right) * (points.length > 1 ? 1 : 0) + (points.length > 1 ? 0 : (W - left - right) / 2);
  const limits = [...points.map((p) => p.value)];
  if (t.interval) limits.push(t.interval.high);
  for (const s of t.strata) if (s.high !== null) limits.push(s.high);
  const yMax = Math.max(...limits) * 1.1 || 1;
  const y = (v) => top + (1 - v / yMax) * (H - top - bottom);

  const title = t.title + (t.unit ? " (" + t.unit + ")" : "");
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc" });
  chart.append(svg("title", { id: "chart-title" }, title + " over time"));
  chart.append(svg("desc", { id: "chart-desc" }, points.map((p) => p.date + ": " + p.display).join("; ")));

  t.strata.forEach((s, i) => {
    const hi = s.high === null ? yMax : Math.min(s.high, yMax);
    if (s.low >= yMax) return;
    chart.append(svg("rect", { class: "band band-stratum-" + (i % 3), x: left, y: y(hi), width: W - left - right, height: y(s.low) - y(hi), "data-band": s.name }));
    chart.append(svg("text", { class: "band-label", x: W - right - 4, y: y(hi) + 12, "text-anchor": "end" }, s.name));
  });
  if (t.interval) {
    const lo = t.interval.low || 0, hi = Math.min(t.interval.high, yMax);
    chart.append(svg("rect", { class: "band band-interval", x: left, y: y(hi), width: W - left - right, height: y(lo) - y(hi), "data-band": "interval" }));
    chart.append(svg("text", { class: "band-label", x: left + 4, y: Math.max(top + 12, y(hi) - 4) }, "Judged against: " + t.interval.name));
  }

  chart.append(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - right, y2: H - bottom }));
  chart.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
  for (let k = 0; k <= 4; k++) {
    const v = (yMax / 4) * k;
    chart.append(svg("text", { class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, Math.round(v).toLocaleString("en")));
  }
  const sorted = points.map((p, i) => ({ ...p, t: dates[i] })).sort((a, b) => a.t - b.t);
  if (sorted.length > 1) chart.append(svg("polyline", { class: "series", points: sorted.map((p) => x(p.t) + "," + y(p.value)).join(" ") }));
  for (const p of sorted) {
    chart.append(svg("circle", { class: "point" + (p.current ? " current" : ""), cx: x(p.t), cy: y(p.value), r: p.current ? 6 : 4, "data-date": p.date }));
    chart.append(svg("text", { class: "point-label", x: x(p.t), y: y(p.value) - 10, "text-anchor": "middle" }, p.display));
    chart.append(svg("text", { class: "tick", x: x(p.t), y: H - bottom + 16, "text-anchor": "middle" }, p.date));
  }

  const table = el("table", { class: "data" }, el("caption", { text: "Values (the chart's data)" }),
    el("thead", {}, el("tr", {}, el("th", { text: "date" }), el("th", { text: "result" }), el("th", { text: "interpretation" }))));
  const body = el("tbody");
  for (const p of sorted) body.append(el("tr", {}, el("td", { text: p.date }), el("td", { text: p.display + (p.current ? " (this result)" : "") }), el("td", { text: p.category })));
  table.append(body);
  const note = t.intervalOrigin ? el("p", { class: "muted", text: "Judged against " + (t.interval ? t.interval.name : "") + ", from " + t.intervalOrigin + "." }) : null;
  return el("figure", { class: "chart" }, el("figcaption", { text: title }), chart, note, table);
}

// ---- operations ---------------------------------------------------------------------------------------------------

function dataTable(headers, rows) {
  const table = el("table", { class: "data" }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))));
  const body = el("tbody");
  for (const r of rows) body.append(el("tr", {}, ...r.map((c) => el("td", { text: c === null || c === undefined ? "" : String(c) }))));
  table.append(body);
  return table;
}

function feedbackChart(days) {
  const byDay = new Map();
  for (const d of days) {
    const e = byDay.get(d.day) || { accepted: 0, overridden: 0 };
    e[d.outcome] += d.count;
    byDay.set(d.day, e);
  }
  const entries = [...byDay.entries()];
  const W = 760, H = 200, left = 40, bottom = 40, top = 10;
  const max = Math.max(1, ...entries.map(([, e]) => e.accepted + e.overridden));
  const bw = Math.max(4, Math.min(40, (W - left) / Math.max(1, entries.length) - 4));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Accepted and overridden cards per day" });
  entries.forEach(([day, e], i) => {
    const x0 = left + i * (bw + 4);
    const h = (n) => (n / max) * (H - top - bottom);
    chart.append(svg("rect", { class: "bar-accepted", x: x0, y: H - bottom - h(e.accepted), width: bw, height: h(e.accepted) }));
    chart.append(svg("rect", { class: "bar-overridden", x: x0, y: H - bottom - h(e.accepted) - h(e.overridden), width: bw, height: h(e.overridden) }));
    chart.append(svg("text", { class: "tick", x: x0 + bw / 2, y: H - bottom + 14, "text-anchor": "middle" }, day.slice(5)));
  });
  return el("figure", { class: "chart" }, chart, el("figcaption", { class: "muted", text: "Green: accepted; orange: overridden." }));
}

async function loadOperations() {
  const feedback = $("feedback"), worker = $("worker"), audit = $("audit");
  try {
    const days = await (await api("/admin/console/feedback?days=90")).json();
    feedback.textContent = "";
    if (days.length === 0) feedback.append(el("p", { class: "muted", text: "No feedback received yet." }));
    else feedback.append(feedbackChart(days), dataTable(["day", "outcome", "override reason", "cards"], days.map((d) => [d.day, d.outcome, d.overrideCode, d.count])));

    const w = await api("/admin/worker");
    worker.textContent = "";
    if (w.status === 404) worker.append(el("p", { class: "muted", text: "The FHIR server worker is not enabled on this service." }));
    else {
      const s = await w.json();
      worker.append(dataTable(["server", "pending", "leased", "dead letters", "done", "lag (s)"],
        [[s.server, s.queue.pending, s.queue.leased, s.queue.deadLetters, s.queue.done, s.queue.lagSeconds.toFixed(1)]]));
      const dead = await (await api("/admin/worker/dead-letters?max=20")).json();
      if (dead.length) worker.append(el("h4", { text: "Dead letters" }), dataTable(["id", "resource", "reason", "attempts", "failed at"], dead.map((d) => [d.id, d.resource, d.reason, d.attempts, d.failedAt])));
    }

    const entries = await (await api("/admin/audit?max=25")).json();
    audit.textContent = "";
    audit.append(dataTable(["at", "door", "caller", "resource", "version", "knowledge", "outcome", "outputs"],
      entries.map((e) => [e.at, e.door, e.caller, e.resource, e.version, e.knowledgeVersion, e.outcome, e.outputs.length])));
  } catch (e) {
    if (e.message !== "access") feedback.append(el("p", { class: "error", text: "Could not load: " + e.message }));
  }
}

// ---- start --------------------------------------------------------------------------------------------------------

loadKnowledge().catch((e) => { $("knowledge").textContent = "Could not load the knowledge: " + e.message; });
loadSamples();
