// Converse.js (the released bundle from npm) in headless Chromium, driven like a person would
// use it, against xmppd over WebSocket (RFC 7395) or BOSH (XEP-0124/0206).
//
//   ALICE_PASSWORD=… node conversejs.mjs --transport websocket \
//       --endpoint wss://localhost:5443/xmpp-websocket --jid alice@localhost \
//       --to bob@localhost --body 'hi' --expect-reply 'hello' --upload picture.png \
//       --screenshot shot.png --timeout 60
//
// A static page on a loopback port of its own (another origin than xmppd's, so the upload PUT
// needs xmppd's CORS answers) loads converse.min.js and logs in with --jid. The script then, in
// the page: waits for --to in the roster, opens a chat with it by a click, types --body and
// presses Enter, waits until --expect-reply is shown in the chat, and (with --upload) picks the
// file in the toolbar's file input, as a user does; Converse asks xmppd's XEP-0363 service for
// a slot, PUTs the bytes and sends the URL. It waits until the chat shows the uploaded file's
// URL, and with --wait-for-file stays until the peer has created that file. The screenshot is taken once the reply is shown and again at the end.
//
// Chromium is Debian's (--chromium, default /usr/bin/chromium). It verifies xmppd's certificate
// with the NSS database under $HOME (the caller imports the test CA there); no check is
// switched off. Exit status 0 when every step held, 1 otherwise (including after --timeout).

import { createServer } from "node:http";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    transport: { type: "string" },
    endpoint: { type: "string" },
    jid: { type: "string" },
    "password-env": { type: "string", default: "ALICE_PASSWORD" },
    to: { type: "string" },
    body: { type: "string" },
    "expect-reply": { type: "string" },
    upload: { type: "string" },
    "wait-for-file": { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    timeout: { type: "string", default: "60" },
    debug: { type: "boolean", default: false },
  },
});

function fail(message) {
  console.error(`conversejs: FAIL: ${message}`);
  process.exit(1);
}

for (const required of ["transport", "endpoint", "jid", "to", "body", "expect-reply"]) {
  if (!args[required]) fail(`--${required} is required`);
}
if (!["websocket", "bosh"].includes(args.transport)) {
  fail(`--transport is websocket or bosh, not ${args.transport}`);
}
const password = process.env[args["password-env"]];
if (!password) fail(`${args["password-env"]} is not set`);
const timeoutMs = Number(args.timeout) * 1000;
if (!(timeoutMs > 0)) fail(`--timeout ${args.timeout} is not a number of seconds`);
const deadline = Date.now() + timeoutMs;
const remaining = () => Math.max(1000, deadline - Date.now());
const watchdog = setTimeout(() => fail(`not done within ${args.timeout} s`), timeoutMs + 5000);

const log = (message) => console.log(`conversejs: ${message}`);

// --- the static page ------------------------------------------------------------------------
const dist = fileURLToPath(new URL("./node_modules/converse.js/dist/", import.meta.url));
const endpointSetting =
  args.transport === "websocket" ? { websocket_url: args.endpoint } : { bosh_service_url: args.endpoint };
const settings = {
  ...endpointSetting,
  assets_path: "/dist/",
  authentication: "login",
  auto_login: true,
  jid: args.jid,
  password,
  discover_connection_methods: false,
  view_mode: "fullscreen",
  i18n: "en",
  play_sounds: false,
  show_send_button: true,
  loglevel: args.debug ? "debug" : "warn",
  // Only what a plain chat client needs, so the run does not depend on OMEMO's wasm.
  blacklisted_plugins: ["converse-omemo"],
};
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmppd interop: Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen">
<script type="module">converse.initialize(${JSON.stringify(settings)});</script>
</body></html>`;
const types = {
  ".js": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".mp3": "audio/mpeg",
  ".ogg": "audio/ogg",
};
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://page").pathname;
  if (path === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page);
    return;
  }
  const relative = normalize(decodeURIComponent(path.replace(/^\/dist\//, "")));
  if (!path.startsWith("/dist/") || relative.startsWith("..")) {
    res.writeHead(404).end();
    return;
  }
  try {
    const data = await readFile(join(dist, relative));
    res.writeHead(200, { "content-type": types[extname(relative)] ?? "application/octet-stream" });
    res.end(data);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;
log(`page at ${pageUrl}, ${args.transport} endpoint ${args.endpoint}`);

// --- the browser ----------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let status = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const tab = await context.newPage();
  tab.on("pageerror", (error) => log(`page error: ${error.message}`));
  tab.on("console", (message) => {
    if (args.debug || message.type() === "error") log(`console.${message.type()}: ${message.text()}`);
  });
  tab.on("response", (response) => {
    if (response.status() >= 400) log(`HTTP ${response.status()} for ${response.url()}`);
  });
  tab.on("websocket", (ws) => log(`the page opened a WebSocket to ${ws.url()}`));
  let boshRequests = 0;
  tab.on("request", (request) => {
    if (request.url() === args.endpoint && request.method() === "POST") boshRequests += 1;
  });
  await tab.goto(pageUrl, { timeout: remaining() });

  // The roster, once logged in: the contact's entry is a link that opens a chat.
  const contact = tab.locator("a.open-chat", { hasText: args.to.split("@")[0] }).first();
  await contact.waitFor({ state: "visible", timeout: remaining() });
  log(`logged in; ${args.to} is shown in the roster`);
  await contact.click();

  // The chat box may still be rendering (the archive of earlier conversations is loading)
  // and drop what is typed: the message counts as sent once the chat shows it, and is typed
  // again otherwise (at most three times).
  const textarea = tab.locator("textarea.chat-textarea").first();
  const mine = tab.locator(".chat-msg__text", { hasText: args.body }).first();
  for (let attempt = 1; ; attempt += 1) {
    await textarea.waitFor({ state: "visible", timeout: remaining() });
    await textarea.fill(args.body);
    await textarea.press("Enter");
    try {
      await mine.waitFor({ state: "visible", timeout: Math.min(5000, remaining()) });
      break;
    } catch (error) {
      if (attempt === 3) throw error;
      log(`the chat does not show the message after attempt ${attempt}; typing it again`);
    }
  }
  log(`sent ${JSON.stringify(args.body)} by typing it into the chat`);

  await tab
    .locator(".chat-msg__text", { hasText: args["expect-reply"] })
    .first()
    .waitFor({ state: "visible", timeout: remaining() });
  log(`the reply is shown in the chat: ${JSON.stringify(args["expect-reply"])}`);
  if (args.screenshot) {
    await tab.screenshot({ path: args.screenshot.replace(/\.png$/, "-reply.png"), fullPage: true });
  }

  if (args.upload) {
    await tab.locator("input.fileupload").first().setInputFiles(args.upload);
    log(`picked ${args.upload} in the chat toolbar's file input`);
    // Converse shows the message with the URL it got from the slot once the PUT succeeded.
    const uploaded = tab.locator(".chat-msg__content", { hasText: "/upload/" }).first();
    await uploaded.waitFor({ state: "visible", timeout: remaining() });
    log("the chat shows the uploaded file's URL");
  }
  // The page stays open until the peer says it has everything: a client sends what it shows
  // as sent on its next request (BOSH), which closing the page would cancel.
  if (args["wait-for-file"]) {
    while (!existsSync(args["wait-for-file"])) {
      if (Date.now() > deadline) throw new Error(`${args["wait-for-file"]} did not appear`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    log("the peer has the file");
  }
  if (args.transport === "bosh") {
    if (boshRequests === 0) throw new Error(`no BOSH request went to ${args.endpoint}`);
    log(`${boshRequests} BOSH requests went to ${args.endpoint}`);
  }
  if (args.screenshot) {
    await tab.screenshot({ path: args.screenshot, fullPage: true });
    log(`screenshot in ${args.screenshot}`);
  }
} catch (error) {
  console.error(`conversejs: FAIL: ${error.message}`);
  status = 1;
} finally {
  await browser.close();
  server.close();
  clearTimeout(watchdog);
}
process.exit(status);
