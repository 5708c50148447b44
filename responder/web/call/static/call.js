// The call page: microphone, transport (our PCM16 WebSocket or WebRTC), live transcript.
import { PcmPlayer } from "./player.js";
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const startButton = $("start");
const stopButton = $("stop");
const stateLine = $("state");
const transcript = new Transcript($("transcript"));
const logList = $("log");
const LOG_LIMIT = 500;
const SSE_EVENTS = ["call.started", "call.meta", "item.added", "item.updated", "decision", "call.ended"];

let call = null; // the live call: {mode, stop()}

function setState(text, state) {
  stateLine.textContent = text;
  stateLine.dataset.state = state;
}

function logEvent(source, data) {
  const li = document.createElement("li");
  const body = typeof data === "string" ? data : JSON.stringify(data);
  li.textContent = `${new Date().toISOString().slice(11, 23)} ${source} ${body}`;
  logList.append(li);
  while (logList.childElementCount > LOG_LIMIT) logList.firstElementChild.remove();
}

$("show-log").addEventListener("change", (e) => { $("log-panel").hidden = !e.target.checked; });

function micErrorMessage(err) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser cannot use a microphone here (the page needs HTTPS or localhost).";
  }
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone permission was denied. Allow the microphone for this site, then press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, then press Start again.";
    case "NotReadableError":
      return "The microphone is in use by another application.";
    default:
      return `Could not open the microphone (${(err && err.name) || err}).`;
  }
}

async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error("no mediaDevices");
  return navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
}

function followTranscript(callId, token) {
  const query = `token=${encodeURIComponent(token || "")}`;
  const source = new EventSource(`/calls/${encodeURIComponent(callId)}/events?${query}`);
  for (const name of SSE_EVENTS) {
    source.addEventListener(name, (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (err) { logEvent("sse!", event.data); return; }
      logEvent(`sse ${name}`, data);
      if (name === "item.added" || name === "item.updated") transcript.upsertItem(data.item);
      else if (name === "decision") transcript.upsertDecision(data.decision);
      else if (name === "call.ended") source.close();
    });
  }
  source.onerror = () => logEvent("sse", "connection interrupted");
  return source;
}

// -- websocket mode: PCM16 24 kHz over /calls/ws --------------------------------------------
async function startWebSocketCall(stream) {
  const context = new AudioContext({ sampleRate: 24000 });
  await context.resume();
  await context.audioWorklet.addModule("/call/static/capture-worklet.js");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/calls/ws`);
  ws.binaryType = "arraybuffer";
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  const player = new PcmPlayer(context, (name) => send({ type: "mark", name }));
  const mic = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "pcm-capture");
  let events = null;
  let ended = false;

  const handlers = {
    call: (msg) => {
      setState(`In call ${msg.call_id}: speak now.`, "in-call");
      events = followTranscript(msg.call_id, msg.view_token);
    },
    mark: (msg) => player.mark(msg.name),
    clear: () => logEvent("audio", `cleared ${player.clear()} queued chunks`),
    ended: (msg) => { ended = true; setState(`Call ended (${msg.reason}).`, "ended"); },
  };

  ws.onopen = () => {
    send({ type: "start", caller: "browser" });
    capture.port.onmessage = (e) => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    mic.connect(capture);
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") { player.play(event.data); return; }
    let msg;
    try { msg = JSON.parse(event.data); } catch (err) { logEvent("ws!", event.data); return; }
    if (msg.type !== "mark") logEvent("ws", msg);
    const handler = handlers[msg.type];
    if (handler) handler(msg);
  };
  ws.onerror = () => logEvent("ws", "socket error");
  ws.onclose = (event) => {
    if (!ended) setState(`Disconnected (${event.code}${event.reason ? ": " + event.reason : ""}).`, "ended");
    finish();
  };

  function finish() {
    mic.disconnect();
    capture.port.onmessage = null;
    stream.getTracks().forEach((t) => t.stop());
    // let the transcript stream deliver the end of the call, then let go of it
    if (events) setTimeout(() => events.close(), 5000);
    setTimeout(() => context.close(), 500);
    callEnded();
  }

  return {
    mode: "websocket",
    stop: () => {
      send({ type: "stop" });
      setTimeout(() => { if (ws.readyState !== WebSocket.CLOSED) ws.close(); }, 2000);
    },
  };
}

// -- webrtc mode: the browser talks to OpenAI; the service holds the key -------------------
async function startWebRtcCall(stream) {
  const pc = new RTCPeerConnection();
  stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
  pc.ontrack = (event) => { $("remote-audio").srcObject = event.streams[0]; };
  const channel = pc.createDataChannel("oai-events");
  channel.onmessage = (event) => {
    try { logEvent("rtc", JSON.parse(event.data).type); } catch (err) { logEvent("rtc!", "bad event"); }
  };
  let events = null;
  pc.onconnectionstatechange = () => {
    logEvent("rtc", `connection ${pc.connectionState}`);
    if (["failed", "closed", "disconnected"].includes(pc.connectionState)) {
      setState(`Call ended (${pc.connectionState}).`, "ended");
      done();
    }
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const response = await fetch("/calls/webrtc", {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: offer.sdp,
  });
  if (!response.ok) {
    pc.close();
    throw new Error(`the service refused the call (${response.status}: ${(await response.text()).slice(0, 200)})`);
  }
  const callId = response.headers.get("X-Call-Id");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  setState(`In call ${callId || ""}: speak now.`, "in-call");
  if (callId) events = followTranscript(callId, response.headers.get("X-Call-Token"));

  let finished = false;
  function done() {
    if (finished) return;
    finished = true;
    stream.getTracks().forEach((t) => t.stop());
    if (events) setTimeout(() => events.close(), 5000);
    callEnded();
  }
  return {
    mode: "webrtc",
    stop: () => { pc.close(); setState("Call ended.", "ended"); done(); },
  };
}

// -- buttons -----------------------------------------------------------------------------
function callEnded() {
  call = null;
  startButton.disabled = false;
  stopButton.disabled = true;
}

async function start() {
  startButton.disabled = true;
  transcript.clear();
  let mode;
  try {
    const response = await fetch("/calls/config", { cache: "no-store" });
    const config = await response.json();
    const asked = new URLSearchParams(location.search).get("mode");
    mode = (config.modes || []).includes(asked) ? asked : config.mode;
    $("mode").textContent = mode === "webrtc" ? "Mode: WebRTC (OpenAI Realtime)." :
      "Mode: WebSocket PCM16 (local simulator: a test double of OpenAI).";
  } catch (err) {
    setState("The service is unreachable.", "error");
    startButton.disabled = false;
    return;
  }
  setState("Asking for the microphone…", "mic");
  let stream;
  try {
    stream = await openMicrophone();
  } catch (err) {
    setState(micErrorMessage(err), "error");
    startButton.disabled = false;
    return;
  }
  setState("Connecting…", "connecting");
  try {
    call = await (mode === "webrtc" ? startWebRtcCall(stream) : startWebSocketCall(stream));
    stopButton.disabled = false;
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    setState(`Could not start the call: ${err.message || err}`, "error");
    startButton.disabled = false;
  }
}

startButton.addEventListener("click", start);
stopButton.addEventListener("click", () => { if (call) call.stop(); });
