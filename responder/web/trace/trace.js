"use strict";
// Trace viewer: the recent-calls list and one call's timeline. Data comes from /api/traces
// (the admin cookie or bearer token is required); every value is set as text, never as HTML.

const POLL_MS = 2000;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "?";
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.reload(); // the server answers with the sign-in form
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
  return response.json();
}

// -- the list -----------------------------------------------------------------------------
function policyLink(label) {
  const [id, version] = label.split("@");
  return el("a", { href: `/policies/${encodeURIComponent(id)}/versions/${encodeURIComponent(version)}`, class: "mono" }, label);
}

function listQuery() {
  const params = new URLSearchParams();
  for (const name of ["since", "until"]) {
    const value = document.getElementById(name).value;
    if (value) params.set(name, String(new Date(value).getTime() / 1000));
  }
  for (const name of ["outcome", "policy"]) {
    const value = document.getElementById(name).value.trim();
    if (value) params.set(name, value);
  }
  return params.toString();
}

async function loadList() {
  try {
    const data = await getJson("/api/traces?" + listQuery());
    const body = document.querySelector("#calls tbody");
    body.replaceChildren(...data.calls.map((c) => el("tr", { "data-call": c.call_id },
      el("td", {}, when(c.started_at)),
      el("td", {}, el("a", { href: `/traces/${encodeURIComponent(c.call_id)}`, class: "mono" }, c.call_id)),
      el("td", {}, c.transport || ""),
      el("td", {}, c.status || ""),
      el("td", {}, c.duration_s != null ? `${Number(c.duration_s).toFixed(1)} s` : ""),
      el("td", { class: `outcome-${c.outcome}` }, c.outcome),
      el("td", {}, c.decisions),
      el("td", {}, ...c.policies.flatMap((p, i) => (i ? [", ", policyLink(p)] : [policyLink(p)]))),
    )));
    setStatus(`${data.calls.length} call(s)`);
  } catch (error) {
    setStatus(`Could not load calls: ${error.message}`);
  }
}

// -- one call -----------------------------------------------------------------------------
const LABELS = {
  user: "caller", assistant: "responder", filler: "filler", tool_call: "tool call",
  tool_output: "tool output", decision: "supervisor", hold_line: "hold line", dtmf: "key press", action: "action",
};

function short(value, limit = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function decisionBlock(d, open) {
  const rows = d.tool_calls.map((t) => el("tr", {},
    el("td", {}, t.round), el("td", { class: "mono" }, t.name), el("td", { class: "mono" }, short(t.arguments, 120)),
    el("td", {}, `${Number(t.ms).toFixed(1)} ms`), el("td", {}, t.ok ? "" : "failed "), el("td", {}, short(t.result_summary, 200)),
  ));
  const policies = d.policies.length
    ? d.policies.flatMap((p, i) => (i ? [", ", policyLink(p)] : [policyLink(p)]))
    : ["none"];
  const details = el("details", { "data-decision": d.decision_id },
    el("summary", {},
      el("span", { class: `outcome-${d.outcome}` }, d.outcome), ` · ${Math.round(d.latency_ms)} ms · `,
      `${d.rounds} round(s) · policies `, ...policies),
    el("div", { class: "body" },
      el("p", {}, el("strong", {}, "Asked: "), d.context || "—"),
      rows.length
        ? el("table", { class: "tools" },
            el("thead", {}, el("tr", {}, ...["round", "tool", "arguments", "time", "", "result"].map((h) => el("th", {}, h)))),
            el("tbody", {}, ...rows))
        : el("p", { class: "muted" }, "No tool calls."),
      el("p", {}, el("strong", {}, "Final text: "), d.text),
      d.error ? el("p", { class: "outcome-error" }, "Error: ", d.error) : null,
      el("p", { class: "muted mono" }, `${d.decision_id} · ${d.model} (${d.api}) · tokens in ${d.input_tokens} / out ${d.output_tokens}`),
    ),
  );
  details.open = open;
  return details;
}

function entryBody(trace, entry, openIds) {
  if (entry.kind === "decision") {
    const d = trace.decisions.find((x) => x.decision_id === entry.item_id);
    return d ? decisionBlock(d, openIds.has(d.decision_id)) : el("span", { class: "text" }, entry.text || "");
  }
  if (entry.kind === "tool_call") return el("span", { class: "text" }, `${entry.name}(${entry.arguments || ""})`);
  if (entry.kind === "action") {
    return el("div", {},
      el("span", { class: `text outcome-${entry.outcome === "done" ? "ok" : "error"}` },
        `${entry.name}: ${entry.outcome || "?"}${entry.target ? ` → ${entry.target}` : ""}`),
      entry.reason ? el("div", { class: "muted" }, `Reason: ${entry.reason}`) : null,
      entry.text ? el("div", {}, `Said first: ${entry.text}`) : null,
      entry.error ? el("div", { class: "outcome-error" }, `Error: ${entry.error}`) : null);
  }
  const parts = [el("span", { class: "text" }, entry.text || "…")];
  if (entry.status === "interrupted") {
    parts.push(el("div", { class: "cut" }, `barge-in: the caller heard ${entry.audio_end_ms} ms`
      + (entry.full_text ? ` of “${entry.full_text}”` : "")));
  } else if (entry.status && !["completed", "in_progress"].includes(entry.status)) {
    parts.push(el("span", { class: "cut" }, ` [${entry.status}]`));
  }
  return el("div", {}, ...parts);
}

function renderCall(trace) {
  document.getElementById("call-id").textContent = trace.call_id;
  document.title = `Call ${trace.call_id}`;
  document.getElementById("live").hidden = !trace.active;
  document.getElementById("summary").replaceChildren(
    el("span", {}, `Transport: ${trace.transport || "?"}`),
    el("span", {}, `Started: ${when(trace.started_at)}`),
    el("span", {}, `Status: ${trace.status || "?"}`),
    el("span", {}, trace.duration_s != null ? `Duration: ${Number(trace.duration_s).toFixed(1)} s` : ""),
    el("span", { class: `outcome-${trace.outcome}` }, `Outcome: ${trace.outcome}`),
  );
  const openIds = new Set([...document.querySelectorAll("details[open]")].map((d) => d.dataset.decision));
  const start = trace.started_at;
  document.getElementById("timeline").replaceChildren(...trace.entries.map((entry) => el("li",
    { class: `kind-${entry.kind}`, "data-kind": entry.kind, "data-item": entry.item_id },
    el("span", { class: "t" }, entry.at && start ? `+${(entry.at - start).toFixed(1)}s` : ""),
    el("span", { class: "who" }, LABELS[entry.kind] || entry.kind),
    entryBody(trace, entry, openIds),
  )));
}

async function loadCall() {
  const callId = decodeURIComponent(location.pathname.split("/").pop());
  try {
    const trace = await getJson(`/api/traces/${encodeURIComponent(callId)}`);
    renderCall(trace);
    setStatus(trace.active ? "Live: updating every 2 s" : `${trace.entries.length} entries, ${trace.decisions.length} decision(s)`);
    if (trace.active) setTimeout(loadCall, POLL_MS);
  } catch (error) {
    setStatus(`Could not load the call: ${error.message}`);
  }
}

if (document.body.dataset.page === "list") {
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadList();
  });
  loadList();
  setInterval(loadList, 10 * POLL_MS);
} else {
  loadCall();
}
