// The benchmark's fast echo upstream: a unary request's bytes go straight back,
// a stream repeats one pre-serialized benchpb.v1.Ping, a bidi call echoes.
//
// Why Node's grpc-js rather than Python's grpc.aio server: grpc-js writes a
// unary response (headers, message, trailers) in one go, while the grpc-core
// server spreads it over several writes. A grpc-core *client* — grpc_bridge,
// the naive proxy — then wakes up ~8 times per call instead of ~2, which
// roughly doubles its CPU per call (bench/PROFILE.md). It also costs the
// upstream less CPU per call, so the proxies, not it, are what is measured.
//
//   NODE_PATH=<dir>/node_modules node bench/node/upstream.js PORT
"use strict";
const grpc = require("@grpc/grpc-js");

const port = process.argv[2];
const identity = (x) => x;
const method = (name, requestStream, responseStream) => ({
  path: `/benchpb.v1.Bench/${name}`,
  requestStream,
  responseStream,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const service = {
  EchoOrder: method("EchoOrder", false, false),
  EchoPing: method("EchoPing", false, false),
  GetPing: method("GetPing", false, false),
  StreamPings: method("StreamPings", false, true),
  ChatPings: method("ChatPings", true, true),
};

// Ping{id: "stream", seq: 1}, serialized by hand: no protobuf library needed.
const PING = Buffer.from([0x0a, 0x06, ...Buffer.from("stream"), 0x10, 0x01]);

// StreamRequest{count = 1}: field 1, varint.
function readCount(buf) {
  let i = 0;
  let count = 0;
  while (i < buf.length && buf[i] === 0x08) {
    i += 1;
    let shift = 0;
    let byte;
    do {
      byte = buf[i++];
      count += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
  }
  return count;
}

const server = new grpc.Server();
server.addService(service, {
  EchoOrder: (call, callback) => callback(null, call.request),
  EchoPing: (call, callback) => callback(null, call.request),
  GetPing: (call, callback) => callback(null, call.request),
  StreamPings: (call) => {
    let left = readCount(call.request);
    const write = () => {
      while (left > 0) {
        left -= 1;
        if (!call.write(PING)) {
          call.once("drain", write); // backpressure: wait for the proxy to read
          return;
        }
      }
      call.end();
    };
    write();
  },
  ChatPings: (call) => {
    call.on("data", (message) => call.write(message));
    call.on("end", () => call.end());
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`upstream listening on 127.0.0.1:${bound}`);
});
