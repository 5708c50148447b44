// Policy editor: plain JavaScript against /editor/api. The token lives in sessionStorage and
// travels only in the Authorization header (no cookies, so no cross-site request can write).
"use strict";

const API = "/editor/api";
const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("policy-editor-token") || "",
  role: null,
  kind: "policy", // what the edit pane holds: a policy, or a test suite (suites.js)
  current: null,
  dirty: false,
};
let previewTimer = null;
let previewSeq = 0;

class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function say(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// -- sign in ---------------------------------------------------------------------------------

async function signIn() {
  try {
    const me = await api("GET", "/me");
    state.role = me.role;
    sessionStorage.setItem("policy-editor-token", state.token);
    $("who").textContent = `${me.name} (${me.role})`;
    $("who").hidden = false;
    $("logout").hidden = false;
    $("login").hidden = true;
    $("workspace").hidden = false;
    document.body.classList.toggle("viewer", me.role !== "editor");
    say(`Signed in as ${me.name}.`);
    await Promise.all([loadList(), loadSuites()]);
  } catch (err) {
    sessionStorage.removeItem("policy-editor-token");
    say(err.status === 401 ? "That token is not valid." : `Sign-in failed: ${err.message}`, true);
  }
}

function signOut() {
  sessionStorage.removeItem("policy-editor-token");
  location.reload();
}

// -- list ------------------------------------------------------------------------------------

async function loadList() {
  const q = $("search").value.trim();
  const data = await api("GET", "/policies" + (q ? `?q=${encodeURIComponent(q)}` : ""));
  const list = $("policy-list");
  list.replaceChildren();
  for (const p of data.policies) {
    const item = el("li");
    const button = el("button", `${p.title}`);
    button.type = "button";
    button.dataset.id = p.id;
    button.className = "policy-link";
    button.addEventListener("click", () => openPolicy(p.id));
    const live = p.published_version ? `live v${p.published_version}` : "not published";
    item.append(button, el("small", ` ${p.id}@${p.version} · ${p.status} · ${live}`));
    list.append(item);
  }
}

// -- edit ------------------------------------------------------------------------------------

async function openPolicy(id, version) {
  if (state.dirty && !confirm("Discard unsaved changes?")) return;
  try {
    const record = await api("GET", `/policies/${encodeURIComponent(id)}` + (version ? `?version=${version}` : ""));
    showRecord(record);
    await loadHistory(id);
  } catch (err) {
    say(`Cannot open ${id}: ${err.message}`, true);
  }
}

function showRecord(record) {
  state.kind = "policy";
  state.current = record;
  state.dirty = false;
  hideGate();
  $("doc-title").textContent = `${record.id}@${record.version}`;
  $("doc-meta").textContent =
    `${record.status} · saved by ${record.author} · ${new Date(record.created_at * 1000).toLocaleString()}` +
    (record.published_version ? ` · live version ${record.published_version}` : " · not published");
  const editable = state.role === "editor";
  $("content").value = record.content;
  $("content").disabled = !editable;
  $("save").disabled = true;
  $("publish").hidden = $("run-tests").hidden = false;
  $("publish").disabled = !editable || (record.status === "published" && record.published_version === record.version);
  $("run-tests").disabled = !editable;
  schedulePreview(0);
}

function newPolicy() {
  if (state.dirty && !confirm("Discard unsaved changes?")) return;
  const today = new Date().toISOString().slice(0, 10);
  state.kind = "policy";
  state.current = { id: null, version: 0, status: "draft", published_version: 0 };
  state.dirty = true;
  hideGate();
  $("doc-title").textContent = "New policy";
  $("doc-meta").textContent = "not saved yet";
  $("content").disabled = false;
  $("content").value =
    `---\nid: new-policy\ntitle: New policy\nversion: 1\ntags: []\nowner: ${state.role}\n` +
    `effective_date: ${today}\nstatus: draft\n---\n\n# New policy\n\n## First section\n\nText.\n`;
  $("save").disabled = false;
  $("publish").disabled = false;
  $("history").replaceChildren();
  fillCompare([]);
  $("diff").textContent = "";
  schedulePreview(0);
}

function schedulePreview(delay = 250) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, delay);
}

async function renderPreview() {
  if (state.kind === "suite") return checkSuite(); // suites.js: problems and cases, no Markdown
  const seq = ++previewSeq;
  try {
    const data = await api("POST", "/preview", { content: $("content").value });
    if (seq !== previewSeq) return; // a newer edit is already being rendered
    $("preview").innerHTML = data.html; // server-rendered with raw HTML disabled (escaped)
    const list = $("problems");
    list.replaceChildren(...data.problems.map((p) => el("li", `line ${p.line}: ${p.message}`)));
    list.className = data.problems.length ? "has-problems" : "";
    if (state.role === "editor" && state.dirty) $("save").disabled = data.problems.length > 0;
  } catch (err) {
    say(`Preview failed: ${err.message}`, true);
  }
}

function policyIdOf(text) {
  const match = /^id:\s*([a-z0-9][a-z0-9-]*)\s*$/m.exec(text);
  return match ? match[1] : null;
}

async function saveDraft() {
  if (state.kind === "suite") return saveSuite(); // suites.js
  const content = $("content").value;
  const id = state.current && state.current.id ? state.current.id : policyIdOf(content);
  if (!id) {
    say("The front matter needs an id.", true);
    return null;
  }
  try {
    const record = await api("PUT", `/policies/${encodeURIComponent(id)}`, {
      content,
      base_version: state.current ? state.current.version : 0,
      message: $("message").value,
    });
    $("message").value = "";
    showRecord(record);
    say(`Saved ${record.id}@${record.version} (${record.status}).`);
    await Promise.all([loadList(), loadHistory(record.id)]);
    return record;
  } catch (err) {
    reportWriteError(err);
    return null;
  }
}

// Publishing runs the policy tests first (suites.js): new failures stop it until an editor
// gives a reason to publish anyway.
async function publish() {
  let record = state.current;
  if (state.dirty || !record || !record.id) record = await saveDraft();
  if (!record) return;
  const gate = await runGate(record);
  if (!gate) return;
  if (gate.blocked) {
    say(`Not published: ${gate.newly_failing.length} policy test case(s) would newly fail.`, true);
    return;
  }
  await publishVersion(record, null);
}

async function publishVersion(record, reason) {
  try {
    const body = { version: record.version, base_version: record.version };
    if (reason) body.override_reason = reason;
    const published = await api("POST", `/policies/${encodeURIComponent(record.id)}/publish`, body);
    showRecord(published);
    if (published.tests) showGate(published.tests, false);
    say(`Published ${published.id}@${published.version}` + (reason ? " despite failing policy tests." : "."));
    await Promise.all([loadList(), loadHistory(published.id)]);
  } catch (err) {
    if (err.status === 422 && err.body.gate) {
      showGate(err.body.gate, true);
      say(`Not published: ${err.body.error}`, true);
    } else {
      reportWriteError(err);
    }
  }
}

function reportWriteError(err) {
  if (err.status === 409) {
    say(`Someone saved a newer version (${err.body.latest_version}) meanwhile. Reload it and redo your change.`, true);
  } else if (err.status === 422) {
    say(`Not saved: ${(err.body.problems || []).join("; ")}`, true);
  } else {
    say(`Not saved: ${err.message}`, true);
  }
}

// -- history, diff, rollback ------------------------------------------------------------------

async function loadHistory(id) {
  const data = await api("GET", `/policies/${encodeURIComponent(id)}/history`);
  const list = $("history");
  list.replaceChildren();
  data.versions.forEach((v, i) => {
    const item = el("li");
    item.append(el("span", `v${v.version} ${v.status} · ${v.author} · ${v.message || ""}`));
    if (v.tests) {
      const tests = el("button", testsLabel(v.tests), "tests");
      tests.type = "button";
      tests.addEventListener("click", () => showGate(v.tests, false));
      item.append(tests);
    }
    const older = data.versions[i + 1];
    if (older) {
      const diff = el("button", "diff", "diff");
      diff.type = "button";
      diff.addEventListener("click", () => showDiff(id, older.version, v.version));
      item.append(diff);
    }
    const view = el("button", "view", "view");
    view.type = "button";
    view.addEventListener("click", () => openPolicy(id, v.version));
    item.append(view);
    if (state.role === "editor" && i > 0) {
      const back = el("button", "roll back to this", "rollback");
      back.type = "button";
      back.addEventListener("click", () => rollback(id, v.version, data.versions[0].version));
      item.append(back);
    }
    list.append(item);
  });
  fillCompare(data.versions);
}

// Any two versions can be compared: newest against the one before it by default.
function fillCompare(versions) {
  for (const [sel, pick] of [["diff-from", 1], ["diff-to", 0]]) {
    const options = versions.map((v) => {
      const option = el("option", `v${v.version} ${v.status}`);
      option.value = String(v.version);
      return option;
    });
    $(sel).replaceChildren(...options);
    if (versions.length) $(sel).value = String(versions[Math.min(pick, versions.length - 1)].version);
  }
}

function compareVersions(event) {
  event.preventDefault();
  if (!state.current || !state.current.id || !$("diff-from").value) return;
  showDiff(state.current.id, Number($("diff-from").value), Number($("diff-to").value));
}

async function showDiff(id, from, to) {
  try {
    const data = await api("GET", `/policies/${encodeURIComponent(id)}/diff?from=${from}&to=${to}`);
    $("diff").textContent = data.diff || "(no difference)";
  } catch (err) {
    say(`Diff failed: ${err.message}`, true);
  }
}

async function rollback(id, version, latest) {
  const note = "A published version goes live for callers at once.";
  if (!confirm(`Store a new version of ${id} with the content of version ${version}? ${note}`)) return;
  try {
    const record = await api("POST", `/policies/${encodeURIComponent(id)}/rollback`, {
      version,
      base_version: latest,
    });
    state.dirty = false;
    showRecord(record);
    say(`Rolled back: ${record.id}@${record.version} has the content of version ${version}.`);
    await Promise.all([loadList(), loadHistory(id)]);
  } catch (err) {
    reportWriteError(err);
  }
}

// -- try it ----------------------------------------------------------------------------------

async function tryIt(event) {
  event.preventDefault();
  $("try-answer").textContent = "Asking…";
  $("try-sections").replaceChildren();
  try {
    const data = await api("POST", "/try", { question: $("try-question").value, set: $("try-set").value });
    $("try-answer").textContent = data.answer;
    $("try-answer").dataset.outcome = data.outcome;
    const items = data.sections.map((s) => el("li", `${s.label}${s.section ? " — " + s.section : ""}`));
    $("try-sections").replaceChildren(...(items.length ? items : [el("li", "no policy used")]));
  } catch (err) {
    $("try-answer").textContent = `Failed: ${err.message}`;
  }
}

// -- wiring ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    signIn();
  });
  $("logout").addEventListener("click", signOut);
  $("search").addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(() => loadList().catch((err) => say(err.message, true)), 200);
  });
  $("content").addEventListener("input", () => {
    state.dirty = true;
    $("save").disabled = false;
    $("publish").disabled = false;
    schedulePreview();
  });
  $("save").addEventListener("click", saveDraft);
  $("publish").addEventListener("click", publish);
  $("new-policy").addEventListener("click", newPolicy);
  $("try-form").addEventListener("submit", tryIt);
  wireSuites(); // suites.js
  $("compare-form").addEventListener("submit", compareVersions);
  if (state.token) signIn();
});
