// The live transcript: items keyed by id (an item may arrive replayed and announced).
const LABELS = {
  user: "Caller",
  assistant: "Agent",
  filler: "Agent (filler)",
  hold_line: "Agent (hold line)",
  decision: "Supervisor decision",
  dtmf: "Key press",
  action: "Call action",
};
const HIDDEN_KINDS = new Set(["function_call", "function_call_output"]);

export class Transcript {
  constructor(list) {
    this.list = list;
    this.entries = new Map();
    this.lastAssistantId = null;
  }

  clear() {
    this.list.replaceChildren();
    this.entries.clear();
    this.lastAssistantId = null;
  }

  upsertItem(item) {
    if (!item || typeof item.id !== "string") return;
    if (item.kind === "function_call") {
      // the agent's words in the same turn as a tool call are its filler
      if (this.lastAssistantId) this.setKind(this.lastAssistantId, "filler");
      return;
    }
    if (HIDDEN_KINDS.has(item.kind)) return;
    let kind = item.kind === "message" ? item.role : item.kind;
    const existing = this.entries.get(item.id);
    if (existing && existing.dataset.kind === "filler") kind = "filler";
    const policies = item.kind === "decision" ? (item.meta && item.meta.policies) || [] : null;
    this.render(item.id, kind, item.role, item.text || "", item.status, policies);
    if (!existing && item.kind === "message") {
      this.lastAssistantId = item.role === "assistant" ? item.id : null;
    }
  }

  upsertDecision(decision) {
    if (!decision || typeof decision.decision_id !== "string") return;
    const status = decision.outcome === "ok" ? "completed" : "failed";
    this.render(decision.decision_id, "decision", "system", decision.text || "", status,
      decision.policies || []);
  }

  setKind(id, kind) {
    const li = this.entries.get(id);
    if (!li) return;
    li.dataset.kind = kind;
    li.querySelector(".who").textContent = LABELS[kind] || kind;
  }

  render(id, kind, role, text, status, policies) {
    let li = this.entries.get(id);
    if (!li) {
      li = document.createElement("li");
      li.className = "entry";
      li.dataset.itemId = id;
      const who = document.createElement("span");
      who.className = "who";
      const body = document.createElement("span");
      body.className = "text";
      li.append(who, body);
      this.entries.set(id, li);
      this.list.append(li);
    }
    li.dataset.kind = kind;
    li.dataset.role = role || "";
    li.dataset.status = status || "";
    li.querySelector(".who").textContent = LABELS[kind] || kind;
    // text is set as text, never as HTML: transcripts are untrusted
    li.querySelector(".text").textContent = text;
    if (policies) {
      li.dataset.policies = policies.join(" ");
      let tag = li.querySelector(".policies");
      if (!tag) {
        tag = document.createElement("span");
        tag.className = "policies";
        li.append(tag);
      }
      tag.textContent = policies.length ? "policies: " + policies.join(", ") : "no policy used";
    }
    li.scrollIntoView({ block: "nearest" });
  }
}
