// The callers' page. Joins a LiveKit room with a token from the standard token
// endpoint (livekit-client's own TokenSource.endpoint against POST /token),
// publishes the microphone with the browser's audio processing on, plays the
// agent, and shows what the worker publishes (README, "What the worker
// publishes"): the agent's state (lk.agent.state), both transcripts
// (lk.transcription, interim text replaced by final), tool calls
// (agent.tool_call), escalation and usage (agent.* attributes).
//
// window.callState mirrors what the page knows, for people debugging and for
// the headless-browser room tests (web/drive.mjs).
import { ConnectionState, DisconnectReason, Room, RoomEvent, TokenSource, Track } from "livekit-client";

// The browser's capture processing. The worker runs LiveKit's echo canceller
// again on its side: a phone app or a SIP caller may have none.
const CAPTURE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const TRANSCRIPTION_TOPIC = "lk.transcription";
const CHAT_TOPIC = "lk.chat";
const TOOL_TOPIC = "agent.tool_call";
const AGENT_STATE = "lk.agent.state";
const STATE_WORDS = {
  initializing: "getting ready", listening: "listening", thinking: "thinking", speaking: "speaking",
};
const STATUS_WORDS = {
  idle: "Not connected", connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…",
  disconnected: "Call ended", failed: "Could not connect",
};

const state = (window.callState = {
  status: "idle", error: null, identity: null, room: null, serverUrl: null,
  micSettings: null, muted: false, agentIdentity: null, agentAudio: false, agentState: null,
  agentStates: [], statuses: [], transcripts: [], interims: [], tools: [], usage: null, escalated: null,
  notices: [], devices: [], typed: [], levels: { you: 0, agent: 0 }, peaks: { you: 0, agent: 0 },
});
const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000;

const tokenSource = TokenSource.endpoint("/token");
let room = null;
let agentTrack = null;
let levels = null;
let userLeft = false;

// ------------------------------------------------------------------ status

function setStatus(status) {
  state.status = status;
  state.statuses.push([status, now()]);
  const el = $("status");
  el.textContent = STATUS_WORDS[status] ?? status;
  el.dataset.status = status;
  const live = status === "connected" || status === "reconnecting";
  $("join").disabled = live || status === "connecting";
  $("leave").disabled = !live;
  $("mute").disabled = !live;
  $("mic").disabled = !live;
  $("text").disabled = $("send").disabled = status !== "connected";
}

function notify(text) {
  state.notices.push(text);
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
}

function setAgentState(value) {
  if (value === state.agentState) return;
  state.agentState = value;
  if (value) state.agentStates.push([value, now()]);
  const el = $("agent-state");
  el.dataset.state = value ?? "absent";
  el.textContent = value ? (STATE_WORDS[value] ?? value) : "not in the call";
}

// ------------------------------------------------------------------ transcripts

const segments = new Map(); // segment id -> <li>

function showLine(key, who, text, { final, agent }) {
  let li = segments.get(key);
  if (!li) {
    li = document.createElement("li");
    li.className = agent ? "agent" : "you";
    li.append(Object.assign(document.createElement("span"), { className: "who", textContent: `${who}:` }));
    li.append(document.createElement("span"));
    segments.set(key, li);
    $("transcript").append(li);
  }
  li.lastChild.textContent = text;
  li.classList.toggle("interim", !final);
  li.scrollIntoView({ block: "nearest" });
}

async function onTranscription(reader, from) {
  const info = reader.info;
  const key = `${from.identity}/${info.attributes?.["lk.segment_id"] ?? info.id}`;
  const agent = from.identity !== state.identity;
  const who = agent ? "Agent" : "You";
  let text = "";
  // A stream is either the agent's words as they are spoken (chunks appended)
  // or one whole interim or final version of the caller's sentence.
  for await (const chunk of reader) {
    text += chunk;
    showLine(key, who, text, { final: false, agent });
  }
  const final = reader.info.attributes?.["lk.transcription_final"] !== "false";
  if (!text) return;
  showLine(key, who, text, { final, agent });
  if (final) state.transcripts.push({ identity: from.identity, text, time: now() });
  else state.interims.push({ identity: from.identity, text, time: now() });
}

// ------------------------------------------------------------------ tools, usage, escalation

const toolItems = new Map(); // call id -> <li>

function argumentsText(args) {
  if (typeof args === "string") return args;
  return Object.entries(args ?? {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

// A tool's output as a person reads it: the "message" of a JSON result, else the text.
function outputText(output) {
  try {
    const value = JSON.parse(output);
    if (value && typeof value === "object" && typeof (value.message ?? value.result) === "string") return value.message ?? value.result;
  } catch { /* plain text */ }
  return output;
}

function onToolCall(event) {
  const entry = state.tools.find((t) => t.call_id === event.call_id);
  if (entry) Object.assign(entry, event); else state.tools.push({ ...event });
  let li = toolItems.get(event.call_id);
  if (!li) {
    li = document.createElement("li");
    toolItems.set(event.call_id, li);
    $("tools").append(li);
  }
  li.dataset.status = event.status;
  li.classList.toggle("escalation-call", event.name === "escalate_to_human");
  const words = { running: "running…", done: "done", error: "failed" }[event.status] ?? event.status;
  li.replaceChildren(
    Object.assign(document.createElement("code"), { textContent: `${event.name}(${argumentsText(event.arguments)})` }),
    document.createTextNode(` — ${words}${event.output ? `: ${outputText(event.output)}` : ""}`),
  );
}

function onAgentAttributes(attributes) {
  if (AGENT_STATE in attributes) setAgentState(attributes[AGENT_STATE]);
  if (attributes["agent.usage"]) {
    try {
      const u = JSON.parse(attributes["agent.usage"]);
      state.usage = u;
      const cost = Number(u.cost_usd ?? 0);
      $("usage").textContent = `This call so far: ${Number(u.audio_in_min ?? 0).toFixed(2)} min heard, `
        + `${Number(u.audio_out_min ?? 0).toFixed(2)} min spoken, about $${cost.toFixed(cost < 0.1 ? 4 : 2)} (${u.responses} replies).`;
    } catch { /* a malformed attribute: keep the last usage shown */ }
  }
  if (attributes["agent.escalated"] === "true" && !state.escalated) {
    state.escalated = attributes["agent.escalation_reason"] || "the caller asked for a person";
    const el = $("escalation");
    el.textContent = `Handing you over to a person (${state.escalated}).`;
    el.hidden = false;
  }
}

// ------------------------------------------------------------------ levels

function startLevels() {
  const context = new AudioContext();
  const meters = new Map(); // meter id -> analyser
  const buffer = new Float32Array(1024);
  let timer = null;
  const tick = () => {
    for (const [id, analyser] of meters) {
      analyser.getFloatTimeDomainData(buffer);
      let sum = 0;
      for (const x of buffer) sum += x * x;
      const dbfs = 10 * Math.log10(sum / buffer.length + 1e-12);
      const level = Math.max(0, Math.min(1, (dbfs + 60) / 60));  // -60 dBFS .. 0 dBFS
      $(id).value = level;
      const who = id === "level-you" ? "you" : "agent";
      state.levels[who] = level;
      state.peaks[who] = Math.max(state.peaks[who], level);
    }
  };
  return {
    watch(id, mediaStreamTrack) {
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      context.createMediaStreamSource(new MediaStream([mediaStreamTrack])).connect(analyser);
      meters.set(id, analyser);
      context.resume().catch(() => {});
      timer ??= setInterval(tick, 100);
    },
    async close() {
      clearInterval(timer);
      for (const id of meters.keys()) $(id).value = 0;
      await context.close().catch(() => {});
    },
  };
}

// ------------------------------------------------------------------ devices

async function listMicrophones() {
  const select = $("mic");
  const devices = await Room.getLocalDevices("audioinput", false).catch(() => []);
  state.devices = devices.map((d) => d.label || d.deviceId);
  const current = room?.getActiveDevice("audioinput");
  select.replaceChildren(...devices.map((d, i) => {
    const option = new Option(d.label || `microphone ${i + 1}`, d.deviceId);
    option.selected = d.deviceId === current;
    return option;
  }));
}

// ------------------------------------------------------------------ the call

async function join() {
  userLeft = false;
  setStatus("connecting");
  $("notice").hidden = true;
  const params = new URLSearchParams(location.search);
  let details;
  try {
    details = await tokenSource.fetch({ roomName: params.get("room") || undefined, participantName: "web caller" });
  } catch (err) {
    state.error = String(err?.message ?? err);
    notify(`The server would not let you join: ${state.error.replace(/^Error generating token from endpoint [^:]+: received /, "")}`);
    setStatus("failed");
    return;
  }
  state.serverUrl = details.serverUrl;
  room = new Room({ audioCaptureDefaults: CAPTURE, adaptiveStream: true, dynacast: true });
  window.room = room;
  levels = startLevels();
  room.on(RoomEvent.TrackSubscribed, (track, _pub, participant) => {
    if (track.kind !== Track.Kind.Audio) return;
    document.body.append(track.attach());  // an <audio autoplay> element
    agentTrack = track;
    state.agentIdentity = participant.identity;
    state.agentAudio = true;
    levels.watch("level-agent", track.mediaStreamTrack);
  });
  room.on(RoomEvent.ParticipantConnected, (participant) => {
    if (participant.isAgent) onAgentAttributes(participant.attributes);
  });
  room.on(RoomEvent.ParticipantAttributesChanged, (_changed, participant) => {
    if (participant.isAgent) onAgentAttributes(participant.attributes);
  });
  room.on(RoomEvent.ParticipantDisconnected, (participant) => {
    if (!participant.isAgent) return;
    setAgentState(null);
    notify("The agent left the call.");
  });
  room.on(RoomEvent.DataReceived, (payload, _participant, _kind, topic) => {
    if (topic !== TOOL_TOPIC) return;
    try { onToolCall(JSON.parse(new TextDecoder().decode(payload))); } catch { /* not ours */ }
  });
  room.on(RoomEvent.Reconnecting, () => setStatus("reconnecting"));
  room.on(RoomEvent.SignalReconnecting, () => setStatus("reconnecting"));
  room.on(RoomEvent.Reconnected, () => setStatus("connected"));
  room.on(RoomEvent.Disconnected, (reason) => {
    if (state.status !== "failed") {
      const why = {
        [DisconnectReason.ROOM_DELETED]: "The agent ended the call.",
        [DisconnectReason.PARTICIPANT_REMOVED]: "You were removed from the call.",
        [DisconnectReason.DUPLICATE_IDENTITY]: "You joined the call somewhere else.",
        [DisconnectReason.SERVER_SHUTDOWN]: "The server went away.",
        [DisconnectReason.JOIN_FAILURE]: "Could not reach the server.",
      }[reason];
      if (why) notify(why);
      else if (!userLeft) notify("The call was cut off.");
      setStatus("disconnected");
    }
    setAgentState(null);
    levels?.close();
  });
  room.on(RoomEvent.MediaDevicesChanged, () => listMicrophones());
  room.registerTextStreamHandler(TRANSCRIPTION_TOPIC, (reader, from) => {
    onTranscription(reader, from).catch((err) => console.warn("transcript stream:", err));
  });
  try {
    await room.connect(details.serverUrl, details.participantToken);
    Object.assign(state, { room: room.name, identity: room.localParticipant.identity });
    for (const participant of room.remoteParticipants.values()) {
      if (participant.isAgent) onAgentAttributes(participant.attributes);
    }
    await room.localParticipant.setMicrophoneEnabled(true);
    const mic = room.localParticipant.getTrackPublication(Track.Source.Microphone)?.track;
    state.micSettings = mic?.mediaStreamTrack.getSettings() ?? null;
    if (mic) levels.watch("level-you", mic.mediaStreamTrack);
    setStatus("connected");
    await listMicrophones();
  } catch (err) {
    state.error = String(err?.message ?? err);
    notify(`Could not start the call: ${state.error}`);
    setStatus("failed");
    await room.disconnect();
  }
}

async function setMuted(muted) {
  if (!room || room.state !== ConnectionState.Connected) return;
  await room.localParticipant.setMicrophoneEnabled(!muted);
  state.muted = muted;
  const button = $("mute");
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = muted ? "Unmute" : "Mute";
}

$("join").addEventListener("click", join);
$("leave").addEventListener("click", () => { userLeft = true; room?.disconnect(); });
$("mute").addEventListener("click", () => setMuted(!state.muted));
$("mic").addEventListener("change", (ev) => room?.switchActiveDevice("audioinput", ev.target.value));
$("chat").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !room) return;
  $("text").value = "";
  await room.localParticipant.sendText(text, { topic: CHAT_TOPIC });
  showLine(`chat/${Date.now()}`, "You", text, { final: true, agent: false });
  state.typed.push({ text, time: now() });
});

// The agent track's receiver statistics (packets, decoded audio energy...).
window.callStats = async () => (agentTrack ? (await agentTrack.getReceiverStats()) ?? null : null);
