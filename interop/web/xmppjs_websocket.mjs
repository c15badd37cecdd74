// @xmpp/client (xmpp.js) over WebSocket from Node: finds the endpoint in the server's
// host-meta.json (XEP-0156), logs in over wss (RFC 7395) as alice, sends bob a message and
// waits for bob's reply.
//
//   ALICE_PASSWORD=… node --experimental-websocket xmppjs_websocket.mjs \
//       --base https://localhost:5443 --domain localhost --to bob@localhost \
//       --body 'hello' --expect-reply 'hi' --timeout 30
//
// Node must trust the server's CA (NODE_EXTRA_CA_CERTS). Exit status 0 when the reply came,
// 1 otherwise (including after --timeout seconds). --debug logs the XML traffic.

import { parseArgs } from "node:util";
import { client, xml } from "@xmpp/client";
import debug from "@xmpp/debug";

const { values: args } = parseArgs({
  options: {
    base: { type: "string" },
    domain: { type: "string", default: "localhost" },
    user: { type: "string", default: "alice" },
    "password-env": { type: "string", default: "ALICE_PASSWORD" },
    to: { type: "string" },
    body: { type: "string" },
    "expect-reply": { type: "string" },
    timeout: { type: "string", default: "30" },
    debug: { type: "boolean", default: false },
  },
});

function fail(why) {
  console.error(`FAIL: ${why}`);
  process.exit(1);
}

for (const required of ["base", "to", "body", "expect-reply"]) {
  if (!args[required]) fail(`--${required} is required`);
}
const password = process.env[args["password-env"]];
if (!password) fail(`the environment variable ${args["password-env"]} is not set`);

const timer = setTimeout(
  () => fail(`no reply within ${args.timeout} s`),
  Number(args.timeout) * 1000,
);

// XEP-0156: the WebSocket endpoint from host-meta.json, with the CORS header web clients need.
const response = await fetch(`${args.base}/.well-known/host-meta.json`, {
  headers: { Host: args.domain },
});
if (!response.ok) fail(`host-meta.json: HTTP ${response.status}`);
if (response.headers.get("access-control-allow-origin") === null) {
  fail("host-meta.json has no Access-Control-Allow-Origin");
}
const meta = await response.json();
const link = (meta.links ?? []).find(
  (l) => l.rel === "urn:xmpp:alt-connections:websocket",
);
if (!link) fail(`no WebSocket link in ${JSON.stringify(meta)}`);
console.log(`host-meta announces ${link.href}`);

const xmpp = client({
  service: link.href,
  domain: args.domain,
  resource: "xmppjs",
  username: args.user,
  password,
});
debug(xmpp, args.debug);

xmpp.on("error", (err) => fail(`client error: ${err.message ?? err}`));

xmpp.on("stanza", async (stanza) => {
  if (!stanza.is("message")) return;
  const from = stanza.attrs.from ?? "";
  const body = stanza.getChildText("body");
  if (stanza.attrs.type === "error") fail(`error message: ${stanza.toString()}`);
  if (from.split("/")[0] !== args.to || body === null) return;
  if (body !== args["expect-reply"]) fail(`reply ${JSON.stringify(body)}`);
  console.log(`received ${JSON.stringify(body)} from ${from}`);
  clearTimeout(timer);
  await xmpp.send(xml("presence", { type: "unavailable" }));
  await xmpp.stop();
  process.exit(0);
});

xmpp.on("online", async (address) => {
  console.log(`online as ${address.toString()} over ${link.href}`);
  await xmpp.send(xml("presence"));
  await xmpp.send(
    xml("message", { to: args.to, type: "chat" }, xml("body", {}, args.body)),
  );
  console.log(`sent ${JSON.stringify(args.body)} to ${args.to}`);
});

await xmpp.start();
