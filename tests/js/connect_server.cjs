"use strict";
// bridgetest.v1.TestService served by connect-es itself (@connectrpc/connect-node's
// connectNodeAdapter): the reference implementation of the Connect protocol
// (JSON and binary, GET, streams) and of gRPC-Web, behaving like the Python
// test upstream (tests/helpers/servers.py) for the methods below.
//
// argv: descriptor-set path, "1.1" | "2" (h2c). stdout, one JSON line each:
// {"port": N} once listening, then {"event": "completed" | "cancelled", "tag"}.
const fs = require("node:fs");
const http = require("node:http");
const http2 = require("node:http2");
const { ConnectError, cors, encodeBinaryHeader } = require("@connectrpc/connect");
const { connectNodeAdapter } = require("@connectrpc/connect-node");
const { registryFrom } = require("./connect_call.cjs");

const registry = registryFrom(fs.readFileSync(process.argv[2]));
const httpVersion = process.argv[3] || "1.1";
const service = registry.getService("bridgetest.v1.TestService");
const schema = (name) => registry.getMessage(name);

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function seconds(duration) {
  return duration ? Number(duration.seconds) + duration.nanos / 1e9 : 0;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

const impl = {
  echo: (request) => request,
  lookup: (request) => request,
  fail(request, context) {
    const trailers = Object.entries(request.trailers).sort();
    for (const [key, value] of trailers) context.responseTrailer.set(key, value);
    if (request.code === 0) return {};
    const error = new ConnectError(request.message, request.code);
    if (request.withDetails) {
      error.details.push(
        {
          desc: schema("google.rpc.BadRequest"),
          value: { fieldViolations: [{ field: "name", description: "must not be empty" }] },
        },
        { desc: schema("bridgetest.v1.CustomDetail"), value: { reason: "flaky", attempt: 3 } },
        { type: "unknown.v1.Mystery", value: new Uint8Array([1, 2, 3]) },
      );
    }
    throw error;
  },
  async sleep(request, context) {
    try {
      await sleep(seconds(request.duration) * 1000, context.signal);
    } catch (reason) {
      emit({ event: "cancelled", tag: request.tag });
      throw reason;
    }
    emit({ event: "completed", tag: request.tag });
    return { completed: true, tag: request.tag };
  },
  echoMetadata(_request, context) {
    const received = {};
    context.requestHeader.forEach((value, key) => (received[key] = value));
    context.responseHeader.set("x-initial", "yes");
    context.responseHeader.set("x-initial-bin", encodeBinaryHeader(new Uint8Array([0, 1])));
    context.responseTrailer.set("x-trailer", "done");
    context.responseTrailer.set("x-trailer-bin", encodeBinaryHeader(new Uint8Array([0xff])));
    return { received, peer: "connect-es" };
  },
  async *serverStream(request, context) {
    const interval = seconds(request.interval) * 1000;
    const sent = request.failCode ? Math.min(request.count, request.failAfter) : request.count;
    try {
      for (let index = 0; index < sent; index++) {
        if (index && interval) await sleep(interval, context.signal);
        yield { index, text: `${request.tag}-${index}` };
      }
    } catch (reason) {
      emit({ event: "cancelled", tag: request.tag });
      throw reason;
    }
    if (context.signal.aborted) {
      emit({ event: "cancelled", tag: request.tag });
      return;
    }
    if (request.failCode) throw new ConnectError(`failing after ${sent}`, request.failCode);
    emit({ event: "completed", tag: request.tag });
  },
};

// CORS for any origin, as connect-es documents it (its cors constants) plus the
// test metadata, so browser clients on another origin can call it.
const metadata = ["x-initial", "x-initial-bin", "x-trailer", "x-trailer-bin"];
const exposed = [...cors.exposedHeaders, ...metadata, ...metadata.map((m) => `trailer-${m}`)];
const allowed = [...cors.allowedHeaders, "x-test", "x-test-bin"];

function withCors(handler) {
  return (request, response) => {
    response.setHeader("access-control-allow-origin", request.headers.origin || "*");
    response.setHeader("access-control-expose-headers", exposed.join(", "));
    if (request.method === "OPTIONS") {
      response.setHeader("access-control-allow-methods", cors.allowedMethods.join(", "));
      response.setHeader("access-control-allow-headers", allowed.join(", "));
      response.setHeader("access-control-max-age", "600");
      response.writeHead(204);
      response.end();
      return;
    }
    handler(request, response);
  };
}

const handler = withCors(
  connectNodeAdapter({ routes: (router) => router.service(service, impl), jsonOptions: { registry } }),
);
const server = httpVersion === "2" ? http2.createServer(handler) : http.createServer(handler);
server.listen(0, "127.0.0.1", () => emit({ port: server.address().port }));
process.on("SIGTERM", () => process.exit(0));
