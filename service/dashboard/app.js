"use strict";
// Ladder's dashboard: reads the JSON API with a token kept in this browser's localStorage.
// Every text from the API goes in through textContent, never as HTML.

const TOKEN_KEY = "ladder.token";
const $ = (selector) => document.querySelector(selector);

class Unauthorized extends Error {}

// The URL's fragment carries `token=` (once) and `trace=<source>/<key>` (a shareable link).
const fragment = () => new URLSearchParams(location.hash.slice(1));

function takeTokenFromUrl() {
  const params = fragment();
  if (params.has("token")) {
    localStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    // Drop the token from the address bar and the history.
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
}

function traceFromUrl() {
  const wanted = fragment().get("trace");
  if (wanted) {
    const [source, ...key] = wanted.split("/");
    trace(source, key.join("/"));
  }
}

// GET a path template such as "/api/items/{source}/{key}/trace": params named in the
// template fill it, the others become the query string.
async function api(template, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (!template.includes(`{${name}}`) && value !== undefined && value !== null && value !== "") {
      query.set(name, value);
    }
  }
  const path = template.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(params[name]));
  const response = await fetch(`${path}?${query}`, {
    headers: { Authorization: `Bearer ${localStorage.getItem(TOKEN_KEY)}` },
  });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function amount(value) {
  const measure = $("#measure").value;
  if (measure === "time") return `${(value / 3600).toFixed(1)} h`;
  return Number.isInteger(value) ? String(value) : value.toFixed(measure === "count" ? 2 : 1);
}

const percent = (share) => `${(share * 100).toFixed(1)}%`;

function bar(numbers, largest) {
  const cell = el("div", { class: "bar" });
  for (const bucket of ["done", "in_progress", "todo"]) {
    const width = largest ? (100 * numbers[bucket]) / largest : 0;
    cell.append(el("span", { class: bucket, style: `width:${width}%`, title: `${bucket}: ${amount(numbers[bucket])}` }));
  }
  return cell;
}

function selection() {
  return { cycle: $("#cycle").value, measure: $("#measure").value };
}

async function loadEffort() {
  const report = await api("/api/reports/effort", { ...selection(), by: "objective" });
  const rows = [
    ...report.rows.map((row) => ({ ...row, label: row.key ? `${row.key} · ${row.title}` : row.title })),
    { ...report.orphan, label: "Orphans (no objective)", bucket: true },
    { ...report.non_okr, label: "Non-OKR work (ktlo, no-okr…)", bucket: true },
  ];
  const largest = Math.max(0, ...rows.map((row) => row.total));
  $("#effort tbody").replaceChildren(
    ...rows.map((row) =>
      el("tr", { class: row.bucket ? "bucket" : "" },
        el("td", {}, row.label),
        el("td", {}, bar(row, largest)),
        el("td", { class: "num" }, amount(row.total)),
        el("td", { class: "num" }, percent(row.share)))),
  );
  $("#alignment").textContent = `${percent(report.alignment)} aligned`;
  $("#effort-note").textContent = report.unestimated
    ? `${report.unestimated} work items carry no estimate.`
    : "";
}

async function loadTrend() {
  const trend = await api("/api/reports/trend", selection());
  const points = trend.points;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute(
    "points",
    points.map((point, i) => `${points.length > 1 ? (300 * i) / (points.length - 1) : 150},${60 - 58 * point.alignment}`).join(" "),
  );
  $("#trend").replaceChildren(line);
  const [first, last] = [points[0], points[points.length - 1]];
  $("#trend-note").textContent = points.length
    ? `Alignment ${percent(first.alignment)} on ${first.day}, ${percent(last.alignment)} on ${last.day}.`
    : "No snapshots for this cycle yet: one is taken after every sync and once a day.";
}

async function loadOrphans() {
  const page = await api("/api/orphans", { ...selection(), roots_only: true, limit: 50 });
  $("#orphans tbody").replaceChildren(
    ...page.items.map((item) =>
      el("tr", {},
        el("td", {}, item.url ? el("a", { href: item.url, target: "_blank", rel: "noopener" }, item.key) : item.key),
        el("td", {}, item.title),
        el("td", {}, item.project),
        el("td", {}, item.assignee),
        el("td", {}, item.status),
        el("td", { class: "num" }, amount(item.effort)),
        el("td", {}, el("a", { href: `#trace=${item.source}/${encodeURIComponent(item.key)}` }, "Trace")))),
  );
  if (!page.items.length) {
    $("#orphans tbody").append(el("tr", {}, el("td", { colspan: 7 }, "No orphans. Every open ticket ladders up.")));
  }
}

async function loadRates() {
  const rates = await api("/api/reports/orphans", selection());
  $("#rates tbody").replaceChildren(
    ...rates.teams.map((team) =>
      el("tr", {},
        el("td", {}, team.team ?? "(no team)"),
        el("td", { class: "num" }, `${amount(team.orphan_effort)} of ${amount(team.effort)}`),
        el("td", { class: "num" }, percent(team.rate)))),
  );
}

async function trace(source, key) {
  $("#trace-source").value = source;
  $("#trace-key").value = key;
  const target = $("#trace");
  target.replaceChildren(el("p", { class: "note" }, "Tracing…"));
  try {
    const found = await api("/api/items/{source}/{key}/trace", { source, key });
    target.replaceChildren(
      el("p", {}, found.explanation),
      ...found.ladders.map((ladder) =>
        el("div", { class: "ladder" },
          el("strong", {}, `${percent(ladder.weight)} of ${key}'s effort`),
          el("ol", {},
            ...ladder.steps.map((step) =>
              el("li", {},
                el("span", { class: "level" }, step.level.replace("_", " ")),
                step.url ? el("a", { href: step.url, target: "_blank", rel: "noopener" }, step.key) : (step.key ?? ""),
                step.key ? ` ${step.title}` : step.title,
                el("span", { class: "why", title: step.origin }, step.detail)))))),
    );
  } catch (error) {
    target.replaceChildren(el("p", { class: "error" }, error.message));
  }
  $("#trace-section").scrollIntoView({ behavior: "smooth" });
}

async function refresh() {
  try {
    await Promise.all([loadEffort(), loadTrend(), loadOrphans(), loadRates()]);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin("That token was refused.");
    $("#effort-note").textContent = error.message;
  }
}

async function loadCycles() {
  const page = await api("/api/cycles", { limit: 1000 });
  const today = new Date().toISOString().slice(0, 10);
  const current = page.items.find((cycle) => cycle.start <= today && today <= cycle.end);
  $("#cycle").replaceChildren(
    ...page.items.map((cycle) => el("option", { value: cycle.key }, `${cycle.key} (${cycle.start} – ${cycle.end})`)),
  );
  const chosen = current ?? page.items[page.items.length - 1];
  if (chosen) $("#cycle").value = chosen.key;
  return page.items.length;
}

function showLogin(message = "") {
  $("#app").hidden = true;
  $("#controls").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
}

async function start() {
  takeTokenFromUrl();
  if (!localStorage.getItem(TOKEN_KEY)) return showLogin();
  try {
    if (!(await loadCycles())) {
      $("#effort-note").textContent = "No cycles yet: add OKRs with `ladder okrs import FILE`.";
    }
  } catch (error) {
    return showLogin(error instanceof Unauthorized ? "That token was refused." : error.message);
  }
  $("#login").hidden = true;
  $("#controls").hidden = false;
  $("#app").hidden = false;
  await refresh();
  traceFromUrl();
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  start();
});
$("#forget").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  showLogin();
});
$("#cycle").addEventListener("change", refresh);
$("#measure").addEventListener("change", refresh);
$("#trace-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `trace=${$("#trace-source").value}/${encodeURIComponent($("#trace-key").value.trim())}`;
});
window.addEventListener("hashchange", traceFromUrl);

start();
