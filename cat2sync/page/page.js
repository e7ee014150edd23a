// The status page: fills itself from status.json every few seconds. Everything shown is
// set as text (textContent), never as HTML: file names come from other machines.
"use strict";

const REFRESH_MS = 2000;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value !== undefined && value !== null) node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ""));
  }
  return node;
}

function badge(text) {
  return el("span", { className: "badge " + text.replaceAll(" ", "-") }, text);
}

function humanBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = n, unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// A time as "12 s ago" / "in 30 s" against the daemon's clock, the full time on hover.
function when(iso, now) {
  if (!iso) return el("span", { className: "muted" }, "never");
  const seconds = (Date.parse(now) - Date.parse(iso)) / 1000;
  const text = seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
  return el("span", { title: iso }, text);
}

function fill(id, rows) {
  document.querySelector(`#${id} tbody`).replaceChildren(...rows);
}

function reachability(server) {
  if (server.answered === null) return badge("unknown");
  return badge(server.answered ? "up" : "down");
}

function serverRows(doc, now) {
  return Object.entries(doc.servers).map(([name, server]) => el("tr", {},
    el("td", {}, name),
    el("td", { className: "file" }, server.url ?? (server.embedded ? "embedded (not started)" : "")),
    el("td", {}, reachability(server), " ", server.since ? el("span", {}, "since ", when(server.since, now)) : ""),
    el("td", {}, when(server.last_request, now)),
  ));
}

function moved(rule) {
  const kinds = Object.entries(rule.moved).filter(([kind]) => kind !== "failed" && kind !== "skipped");
  return kinds.length ? kinds.map(([kind, m]) => `${m.files} ${kind}`).join(", ") : "—";
}

function ruleRows(doc, now) {
  return Object.entries(doc.rules).map(([name, rule]) => el("tr", { id: `rule-${name}` },
    el("td", {}, el("strong", {}, name), " ", el("span", { className: "muted" }, rule.kind)),
    el("td", {}, badge(rule.state ?? "unknown")),
    el("td", { className: "num" }, rule.pending),
    el("td", {}, rule.pending ? duration(rule.oldest_pending_age) : "—"),
    el("td", {}, moved(rule)),
    el("td", {}, when(rule.last_pass, now)),
    el("td", {}, when(rule.last_success, now)),
    el("td", { className: "num" }, humanBytes(rule.bytes_up)),
    el("td", { className: "num" }, humanBytes(rule.bytes_down)),
    el("td", {}, rule.next_retry ? when(rule.next_retry, now) : "—"),
  ));
}

function problems(doc, now) {
  const cards = [];
  for (const [name, rule] of Object.entries(doc.rules)) {
    if (!rule.last_error && !(rule.in_flight ?? []).length) continue;
    const card = el("div", { className: rule.last_error ? "problem" : "warning" },
      el("h3", {}, rule.last_error ? `${name}: last error` : `${name}: sending`));
    if (rule.last_error) card.append(el("pre", {}, rule.last_error));
    if (rule.next_retry) card.append(el("p", {}, "next retry ", when(rule.next_retry, now)));
    if ((rule.in_flight ?? []).length) {
      card.append(el("p", {}, "in flight: ", rule.in_flight.join(", ")));
    }
    if (rule.pending_files.length) {
      card.append(el("p", { className: "muted" }, "waiting: ", rule.pending_files.join(", ")));
    }
    cards.push(card);
  }
  return cards;
}

function eventRows(doc) {
  return doc.events.map((event) => el("tr", {},
    el("td", { title: event.time }, new Date(Date.parse(event.time)).toLocaleTimeString()),
    el("td", {}, event.rule),
    el("td", {}, badge(event.kind)),
    el("td", { className: "file", title: event.remote ?? "" },
      event.path, event.message ? el("span", { className: "muted" }, ` — ${event.message}`) : ""),
    el("td", { className: "num" }, event.bytes ? humanBytes(event.bytes) : ""),
  ));
}

function render(doc) {
  const now = doc.daemon.now;
  document.getElementById("version").textContent = doc.daemon.version;
  document.getElementById("updated").textContent =
    `updated ${new Date(Date.parse(now)).toLocaleTimeString()} · daemon ${doc.daemon.pid}, ` +
    `started ${new Date(Date.parse(doc.daemon.started)).toLocaleString()}`;
  fill("servers", serverRows(doc, now));
  fill("rules", ruleRows(doc, now));
  document.getElementById("problems").replaceChildren(...problems(doc, now));
  const events = eventRows(doc);
  fill("events", events.length ? events : [el("tr", {}, el("td", { colSpan: 5, className: "muted" }, "none yet"))]);
  document.body.classList.remove("stale");
}

async function refresh() {
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (err) {
    document.body.classList.add("stale");
    document.getElementById("updated").textContent =
      `the daemon does not answer (${err.message}); trying again`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
