// Headless Chromium for the room tests, driven by JSON lines on stdin
// (agent/testing/browser.py is the Python side):
//
//   node web/drive.mjs '{"chromium": "/usr/bin/chromium", "wav": "q.wav", "secureOrigins": ["http://10.77.0.1:8080"]}'
//   <- {"ready": true}
//   -> {"id": 1, "op": "goto", "url": "http://10.77.0.1:8080/?room=demo"}
//   <- {"id": 1, "ok": true, "value": null}
//
// Ops: goto {url}; click {selector}; fill {selector, text}; select {selector, value};
// press {selector, key}; key {key} (to the focused element); eval {expr} (a JS expression, awaited); waitFor {expr, timeoutS}
// (until the expression is truthy); viewport {width, height}; screenshot {path, fullPage};
// errors (page errors and console errors so far); close. EOF on stdin closes the browser.
//
// The fake microphone plays `wav` once from when the page opens it ("%noloop"),
// then silence; without one it plays a second of silence (Chromium's default
// beeps, which the agent would hear as someone talking).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

let opts;
try {
  opts = JSON.parse(process.argv[2] ?? "{}");
} catch (err) {
  console.error(`usage: node drive.mjs '{"chromium"?: PATH, "wav"?: FILE}': ${err.message}`);
  process.exit(2);
}

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

const profile = mkdtempSync(join(tmpdir(), "agent-chromium-"));
const micFile = opts.wav ?? silentWav(join(profile, "silence.wav"));
const args = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  `--use-file-for-fake-audio-capture=${micFile}%noloop`,
];
// A page served over plain HTTP from an address other than loopback is no
// secure context, so it gets no microphone; the test's own origins are trusted.
if (opts.secureOrigins?.length) args.push(`--unsafely-treat-insecure-origin-as-secure=${opts.secureOrigins.join(",")}`);
const errors = [];
let context;
let closing = false;

async function close(code) {
  if (closing) return;
  closing = true;
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

const send = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium ?? "/usr/bin/chromium", headless: true, args,
    permissions: ["microphone"], viewport: { width: 1280, height: 900 },
  });
} catch (err) {
  send({ ready: false, error: err.message });
  await close(1);
}
const page = context.pages()[0] ?? (await context.newPage());
page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
page.on("console", (msg) => { if (msg.type() === "error") errors.push(`console: ${msg.text()}`); });
send({ ready: true });

const ops = {
  goto: ({ url }) => page.goto(url).then(() => null),
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, text }) => page.fill(selector, text),
  press: ({ selector, key }) => page.press(selector, key),
  key: ({ key }) => page.keyboard.press(key),
  select: ({ selector, value }) => page.selectOption(selector, value).then(() => null),
  eval: ({ expr }) => page.evaluate(`(async () => (${expr}))()`),
  waitFor: ({ expr, timeoutS }) => page.waitForFunction(expr, null, { timeout: (timeoutS ?? 30) * 1000, polling: 100 }).then(() => true),
  viewport: ({ width, height }) => page.setViewportSize({ width, height }),
  screenshot: ({ path, fullPage }) => page.screenshot({ path, fullPage: fullPage ?? true }).then(() => path),
  errors: () => errors,
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let msg;
  try { msg = JSON.parse(line); } catch { send({ ok: false, error: `not JSON: ${line}` }); continue; }
  if (msg.op === "close") { send({ id: msg.id, ok: true, value: null }); break; }
  const op = ops[msg.op];
  if (!op) { send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` }); continue; }
  try {
    const value = await op(msg);
    send({ id: msg.id, ok: true, value: value ?? null });
  } catch (err) {
    send({ id: msg.id, ok: false, error: err.message });
  }
}
await close(0);
