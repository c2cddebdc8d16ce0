// The caller's page: joins a LiveKit room, publishes the microphone with the
// browser's own audio processing on, plays the agent, shows what it says.
// window.callState mirrors what the page knows, for people debugging and for
// the headless-browser room tests (web/drive.mjs).
"use strict";
const { Room, RoomEvent, Track } = LivekitClient;

// The browser's capture processing. The worker runs LiveKit's echo canceller
// again on its side: a phone app or a SIP caller may have none.
const CAPTURE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const TRANSCRIPTION_TOPIC = "lk.transcription";
const CHAT_TOPIC = "lk.chat";

const state = (window.callState = {
  status: "idle", error: null, identity: null, room: null,
  micSettings: null, agentIdentity: null, agentAudio: false, transcripts: [],
});
const $ = (id) => document.getElementById(id);

function show(text, cls) {
  const p = document.createElement("p");
  if (cls) p.className = cls;
  p.textContent = text;
  $("log").append(p);
}

function setStatus(status) {
  state.status = status;
  $("state").textContent = status;
  const inCall = status === "connected";
  $("join").disabled = inCall || status === "connecting";
  $("leave").disabled = !inCall;
  $("text").disabled = $("send").disabled = !inCall;
}

let room = null;
let agentTrack = null;

// The agent track's receiver statistics (packets, decoded audio energy...).
window.callStats = async () => (agentTrack ? (await agentTrack.getReceiverStats()) ?? null : null);

async function join() {
  setStatus("connecting");
  try {
    const params = new URLSearchParams(location.search);
    const query = new URLSearchParams({ room: params.get("room") || "demo" });
    const reply = await fetch(`/token?${query}`);
    if (!reply.ok) throw new Error(`token: ${reply.status} ${await reply.text()}`);
    const { url, token, room: roomName, identity } = await reply.json();
    Object.assign(state, { room: roomName, identity });

    room = new Room({ audioCaptureDefaults: CAPTURE, adaptiveStream: true, dynacast: true });
    room.on(RoomEvent.TrackSubscribed, (track, _pub, participant) => {
      if (track.kind !== Track.Kind.Audio) return;
      document.body.append(track.attach());  // an <audio autoplay> element
      agentTrack = track;
      state.agentIdentity = participant.identity;
      state.agentAudio = true;
    });
    room.on(RoomEvent.Disconnected, (reason) => { setStatus("disconnected"); show(`call ended (${reason ?? "disconnected"})`); });
    room.on(RoomEvent.Reconnecting, () => setStatus("reconnecting"));
    room.on(RoomEvent.Reconnected, () => setStatus("connected"));
    room.registerTextStreamHandler(TRANSCRIPTION_TOPIC, async (reader, from) => {
      const text = await reader.readAll();
      const final = reader.info.attributes?.["lk.transcription_final"] !== "false";
      if (!text || !final) return;
      state.transcripts.push({ identity: from.identity, text, time: Date.now() / 1000 });
      show(`${from.identity === state.identity ? "you" : "agent"}: ${text}`, from.identity === state.identity ? "" : "agent");
    });

    await room.connect(url, token);
    await room.localParticipant.setMicrophoneEnabled(true);
    const mic = room.localParticipant.getTrackPublication(Track.Source.Microphone);
    state.micSettings = mic?.track?.mediaStreamTrack.getSettings() ?? null;
    setStatus("connected");
  } catch (err) {
    state.error = String(err?.message ?? err);
    show(`could not start the call: ${state.error}`, "error");
    setStatus("failed");
  }
}

$("join").onclick = join;
$("leave").onclick = () => room?.disconnect();
$("chat").onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !room) return;
  $("text").value = "";
  await room.localParticipant.sendText(text, { topic: CHAT_TOPIC });
  show(`you: ${text}`);
};
