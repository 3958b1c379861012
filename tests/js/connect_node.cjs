"use strict";
// @connectrpc/connect-node, driven by JSON lines (tests/helpers/js_clients.py
// connect_node_call): each stdin line describes one call, and its answer is one
// stdout line. One long-lived process per test process serves every call, so a
// call costs the call, not a Node start-up and a module load (~0.3 s of CPU).
// Calls run concurrently; RPC errors are part of the answer ({id, result}), and
// anything else is reported as {id, failure: stack} for the caller to raise.
//
// stdin line: {id, descriptorSet: path, baseUrl, protocol: "connect" | "grpcweb",
//              binary, httpVersion: "1.1" | "2", useHttpGet, call: {...connect_call.cjs spec}}
//
// Each call gets its own connection, closed when it ends, as a process per call
// had: a fresh keep-alive http.Agent (HTTP/1.1) or Http2SessionManager (h2),
// destroyed afterwards. Nothing but the parsed descriptor sets is shared.
const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
const readline = require("node:readline");
const {
  createConnectTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} = require("@connectrpc/connect-node");
const { registryFrom, runCall } = require("./connect_call.cjs");

const registries = new Map(); // "path mtime size" -> registry

function registryOf(path) {
  const stat = fs.statSync(path);
  const key = `${path} ${stat.mtimeMs} ${stat.size}`;
  let registry = registries.get(key);
  if (registry === undefined) {
    registry = registryFrom(fs.readFileSync(path));
    registries.set(key, registry);
  }
  return registry;
}

async function call(input) {
  const registry = registryOf(input.descriptorSet);
  const options = {
    baseUrl: input.baseUrl,
    httpVersion: input.httpVersion || "1.1",
    useBinaryFormat: Boolean(input.binary),
    jsonOptions: { registry },
  };
  let close;
  if (options.httpVersion === "2") {
    const sessionManager = new Http2SessionManager(input.baseUrl);
    options.sessionManager = sessionManager;
    close = () => sessionManager.abort();
  } else {
    // The options of Node's global agent (which a process per call used); that
    // process closed its connection on exit, this closes it when the call is done.
    const Agent = input.baseUrl.startsWith("https:") ? https.Agent : http.Agent;
    const agent = new Agent({ keepAlive: true, scheduling: "lifo", timeout: 5000 });
    options.nodeOptions = { agent };
    close = () => agent.destroy();
  }
  let transport;
  if (input.protocol === "grpcweb") {
    transport = createGrpcWebTransport(options);
  } else if (input.protocol === "connect") {
    transport = createConnectTransport({ ...options, useHttpGet: Boolean(input.useHttpGet) });
  } else {
    throw new Error(`unknown protocol ${input.protocol}`);
  }
  try {
    return await runCall(input.call, transport, registry);
  } finally {
    close();
  }
}

let pending = 0;
let ended = false;

function answer(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
  if (--pending === 0 && ended) process.exit(0);
}

readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on("line", (line) => {
    if (!line.trim()) return;
    pending++;
    let input;
    try {
      input = JSON.parse(line);
    } catch (e) {
      answer({ id: null, failure: `bad request line: ${e}` });
      return;
    }
    call(input).then(
      (result) => answer({ id: input.id, result }),
      (e) => answer({ id: input.id, failure: `${e && e.stack ? e.stack : e}` }),
    );
  })
  .on("close", () => {
    ended = true;
    if (pending === 0) process.exit(0);
  });
