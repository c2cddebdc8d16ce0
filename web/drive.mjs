// Drive the callers' page in headless Chromium, as a person would: open it,
// start the call, speak a WAV file into the fake microphone, optionally type a
// message, and wait until the agent says something matching a pattern.
//
//   node web/drive.mjs '{"page": "http://127.0.0.1:8080/?room=demo", "wav": "q.wav",
//                        "until": "open 9 am", "timeoutS": 60}'
//
// Prints one JSON object: the page's window.callState, the agent track's
// receiver stats and any page errors. Exit 0 when the pattern was heard,
// 1 when it was not (timeout or a failed call), 2 on bad arguments.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

let opts;
try {
  opts = JSON.parse(process.argv[2] ?? "");
  if (!opts.page || !opts.until) throw new Error("page and until are required");
} catch (err) {
  console.error(`usage: node drive.mjs '{"page": URL, "until": REGEX, "wav"?: FILE, "chat"?: TEXT, "timeoutS"?: N}': ${err.message}`);
  process.exit(2);
}
const until = new RegExp(opts.until, "i");
const timeoutMs = (opts.timeoutS ?? 60) * 1000;

// One second of 16-bit mono silence at 48 kHz, as a WAV file at `path`.
function silentWav(path) {
  const rate = 48000, bytes = rate * 2;
  const wav = Buffer.alloc(44 + bytes);
  wav.write("RIFF", 0); wav.writeUInt32LE(36 + bytes, 4); wav.write("WAVEfmt ", 8);
  wav.writeUInt32LE(16, 16); wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22);  // PCM, mono
  wav.writeUInt32LE(rate, 24); wav.writeUInt32LE(rate * 2, 28); wav.writeUInt16LE(2, 32); wav.writeUInt16LE(16, 34);
  wav.write("data", 36); wav.writeUInt32LE(bytes, 40);
  writeFileSync(path, wav);
  return path;
}
const args = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
];
const profile = mkdtempSync(join(tmpdir(), "agent-chromium-"));
// Without a file, Chromium's fake microphone beeps every second, which the agent
// hears as someone talking: a caller who only types sits in a quiet room.
const micFile = opts.wav ?? silentWav(join(profile, "silence.wav"));
// "%noloop": the file plays once from when the page opens the microphone, then silence.
args.push(`--use-file-for-fake-audio-capture=${micFile}%noloop`);
const errors = [];
let context;
let heard = false;
let result = {};
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium ?? "/usr/bin/chromium", headless: true, args,
    permissions: ["microphone"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(`console: ${msg.text()}`); });
  await page.goto(opts.page);
  const started = Date.now();
  await page.click("#join");
  await page.waitForFunction(() => ["connected", "failed"].includes(window.callState.status), null, { timeout: timeoutMs });
  const agentSaid = () => page.evaluate(() => window.callState.transcripts.filter((t) => t.identity !== window.callState.identity).map((t) => t.text));
  if (opts.chat) {
    // after the greeting, as a person would
    while (Date.now() - started < timeoutMs && (await agentSaid()).length === 0) await page.waitForTimeout(200);
    await page.fill("#text", opts.chat);
    await page.click("#send");
  }
  while (Date.now() - started < timeoutMs) {
    const status = await page.evaluate(() => window.callState.status);
    if (status === "failed") break;
    if ((await agentSaid()).some((text) => until.test(text))) { heard = true; break; }
    await page.waitForTimeout(200);
  }
  result = await page.evaluate(async () => ({ state: window.callState, stats: await window.callStats() }));
  await page.click("#leave").catch(() => {});
} catch (err) {
  errors.push(`driver: ${err.message}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ heard, ...result, errors }));
process.exit(heard ? 0 : 1);
