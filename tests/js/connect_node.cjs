"use strict";
// @connectrpc/connect-node: one call, described by the JSON on stdin, answered
// as JSON on stdout (tests/helpers/js_clients.py connect_node_call). Exit code 0 also
// for RPC errors (they are in the answer); anything else fails loudly.
//
// stdin: {descriptorSet: path, baseUrl, protocol: "connect" | "grpcweb",
//         binary, httpVersion: "1.1" | "2", useHttpGet, call: {...connect_call.cjs spec}}
const fs = require("node:fs");
const { createConnectTransport, createGrpcWebTransport } = require("@connectrpc/connect-node");
const { registryFrom, runCall } = require("./connect_call.cjs");

async function main() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const registry = registryFrom(fs.readFileSync(input.descriptorSet));
  const options = {
    baseUrl: input.baseUrl,
    httpVersion: input.httpVersion || "1.1",
    useBinaryFormat: Boolean(input.binary),
    jsonOptions: { registry },
  };
  let transport;
  if (input.protocol === "grpcweb") {
    transport = createGrpcWebTransport(options);
  } else if (input.protocol === "connect") {
    transport = createConnectTransport({ ...options, useHttpGet: Boolean(input.useHttpGet) });
  } else {
    throw new Error(`unknown protocol ${input.protocol}`);
  }
  const result = await runCall(input.call, transport, registry);
  process.stdout.write(JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
    process.exit(2);
  },
);
