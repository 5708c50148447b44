// Policy test suites in the editor, and the publish gate. Loaded after editor.js, whose helpers
// (api, $, el, say, state, schedulePreview, publishVersion) it uses. Suites are YAML files
// (policies/tests/*.yaml) versioned beside the policies; the gate runs them on the set a
// publish would make live and shows what it changes.
"use strict";

// -- the suites list and editing ---------------------------------------------------------------

async function loadSuites() {
  const data = await api("GET", "/suites");
  const list = $("suite-list");
  list.replaceChildren();
  for (const s of data.suites) {
    const item = el("li");
    const button = el("button", s.file, "suite-link");
    button.type = "button";
    button.dataset.name = s.name;
    button.addEventListener("click", () => openSuite(s.name));
    item.append(button, el("small", ` v${s.version} · ${s.cases} cases`));
    list.append(item);
  }
}

async function openSuite(name, version) {
  if (state.dirty && !confirm("Discard unsaved changes?")) return;
  try {
    const query = version ? `?version=${version}` : "";
    const record = await api("GET", `/suites/${encodeURIComponent(name)}${query}`);
    showSuite(record);
    await loadSuiteHistory(name);
  } catch (err) {
    say(`Cannot open ${name}: ${err.message}`, true);
  }
}

function showSuite(record) {
  state.kind = "suite";
  state.current = record;
  state.dirty = false;
  hideGate();
  $("doc-title").textContent = `tests/${record.file}@${record.version}`;
  $("doc-meta").textContent =
    `${record.cases} cases · saved by ${record.author} · ${new Date(record.created_at * 1000).toLocaleString()}`;
  $("content").value = record.content;
  $("content").disabled = state.role !== "editor";
  $("save").disabled = true;
  $("publish").hidden = $("run-tests").hidden = true; // suites are not published: the latest is the suite
  schedulePreview(0);
}

async function checkSuite() {
  const name = state.current.name;
  try {
    const data = await api("POST", `/suites/${encodeURIComponent(name)}/check`, { content: $("content").value });
    if (state.kind !== "suite") return;
    const preview = $("preview");
    preview.replaceChildren(el("h3", `${data.cases.length} cases`));
    const cases = el("ol", undefined, "suite-cases");
    for (const c of data.cases) cases.append(el("li", `${c.id} (line ${c.line}, ${c.outcome}): ${c.question}`));
    preview.append(cases);
    const list = $("problems");
    list.replaceChildren(...data.problems.map((p) => el("li", `tests/${name}.yaml:${p.line}: ${p.message}`)));
    list.className = data.problems.length ? "has-problems" : "";
    if (state.role === "editor" && state.dirty) $("save").disabled = data.problems.length > 0;
  } catch (err) {
    say(`Check failed: ${err.message}`, true);
  }
}

async function saveSuite() {
  const record = state.current;
  try {
    const saved = await api("PUT", `/suites/${encodeURIComponent(record.name)}`, {
      content: $("content").value,
      base_version: record.version,
      message: $("message").value,
    });
    $("message").value = "";
    showSuite(saved);
    say(`Saved tests/${saved.file}@${saved.version} (${saved.cases} cases).`);
    await Promise.all([loadSuites(), loadSuiteHistory(saved.name)]);
    return saved;
  } catch (err) {
    if (err.status === 422) say(`Not saved: ${(err.body.problems || []).join("; ")}`, true);
    else if (err.status === 409) say(`Someone saved version ${err.body.latest_version} meanwhile. Reload it.`, true);
    else say(`Not saved: ${err.message}`, true);
    return null;
  }
}

async function loadSuiteHistory(name) {
  const data = await api("GET", `/suites/${encodeURIComponent(name)}/history`);
  const list = $("history");
  list.replaceChildren();
  for (const v of data.versions) {
    const item = el("li");
    item.append(el("span", `v${v.version} · ${v.cases} cases · ${v.author} · ${v.message || ""}`));
    const view = el("button", "view", "view");
    view.type = "button";
    view.addEventListener("click", () => openSuite(name, v.version));
    item.append(view);
    list.append(item);
  }
  $("diff-from").replaceChildren();
  $("diff-to").replaceChildren();
  $("diff").textContent = "";
}

// -- the gate -----------------------------------------------------------------------------------

function testsLabel(gate) {
  const parts = [`tests ${gate.passed}/${gate.total}`];
  if (gate.newly_failing.length) parts.push(`${gate.newly_failing.length} newly failing`);
  if (gate.override_reason) parts.push("published anyway");
  return parts.join(", ");
}

async function runGate(record) {
  showGateMessage("Running the policy tests on this change…");
  try {
    const gate = await api("POST", `/policies/${encodeURIComponent(record.id)}/gate`, { version: record.version });
    showGate(gate, gate.blocked);
    return gate;
  } catch (err) {
    showGateMessage(`The policy tests could not run: ${err.message}`);
    return null;
  }
}

function showGateMessage(text) {
  $("gate").hidden = false;
  $("gate-summary").textContent = text;
  for (const id of ["gate-failing", "gate-passing", "gate-still"]) $(id).replaceChildren();
  $("override-form").hidden = true;
}

function hideGate() {
  $("gate").hidden = true;
  $("override-form").hidden = true;
}

// `offerOverride`: new failures block this publish; an editor may publish anyway with a reason.
function showGate(gate, offerOverride) {
  $("gate").hidden = false;
  $("gate").dataset.blocked = String(gate.blocked);
  const live = `${gate.baseline_passed}/${gate.total} on the live set`;
  $("gate-summary").textContent =
    `${gate.passed}/${gate.total} cases pass with this change (${live}): ` +
    `${gate.newly_failing.length} newly failing, ${gate.newly_passing.length} newly passing, ` +
    `${gate.unchanged} unchanged` + (gate.still_failing.length ? `, ${gate.still_failing.length} still failing` : "") +
    (gate.override_reason ? `. Published anyway by ${gate.override_by}: “${gate.override_reason}”` : ".");
  $("gate-failing").replaceChildren(...gate.newly_failing.map((c) => caseBlock(c, "newly failing")));
  $("gate-passing").replaceChildren(
    ...(gate.newly_passing.length ? [el("p", `Newly passing: ${gate.newly_passing.join(", ")}`)] : []),
  );
  $("gate-still").replaceChildren(...gate.still_failing.map((c) => caseBlock(c, "still failing")));
  $("override-form").hidden = !(offerOverride && gate.blocked && state.role === "editor");
  $("publish-anyway").disabled = $("override-reason").value.trim().length < 10;
}

function caseBlock(brief, label) {
  const block = el("div", undefined, "gate-case");
  block.dataset.case = brief.id;
  block.append(el("strong", `${brief.id}`), el("small", ` ${label} · tests/${brief.file}:${brief.line}`));
  const failures = el("ul");
  for (const f of brief.failures) failures.append(el("li", f));
  block.append(failures, el("blockquote", brief.answer || "(no answer)"));
  return block;
}

async function publishAnyway(event) {
  event.preventDefault();
  const reason = $("override-reason").value.trim();
  if (reason.length < 10 || !state.current || state.kind !== "policy") return;
  await publishVersion(state.current, reason);
  $("override-reason").value = "";
}

async function runTestsOnly() {
  let record = state.current;
  if (state.dirty || !record || !record.id) record = await saveDraft();
  if (record) await runGate(record);
}

function wireSuites() {
  $("override-form").addEventListener("submit", publishAnyway);
  $("override-reason").addEventListener("input", () => {
    $("publish-anyway").disabled = $("override-reason").value.trim().length < 10;
  });
  $("run-tests").addEventListener("click", runTestsOnly);
}
