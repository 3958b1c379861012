"use strict";
// The browser clients, bundled by esbuild for tests/helpers/js_browser.py's page:
// window.jsClients.connectWeb(input) runs one call with @connectrpc/connect-web
// (fetch, streamed responses), window.jsClients.grpcWebText(input) one with the
// official grpc-web runtime in text mode (XHR), the way its generated code
// would: a MethodDescriptor and rpcCall / serverStreaming. Both resolve to the
// JSON shape of connect_call.cjs. input: {descriptorSet (base64), baseUrl,
// protocol, binary, useHttpGet, call: {...connect_call.cjs spec}}.
const { createConnectTransport, createGrpcWebTransport } = require("@connectrpc/connect-web");
const { fromBinary, fromJson, toBinary, toJson } = require("@bufbuild/protobuf");
const grpcWeb = require("grpc-web");
const { registryFrom, findMethod, runCall, base64Decode, base64Encode } = require("./connect_call.cjs");

// Connect's code names, by gRPC code number.
const CODES = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
  "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
  "unauthenticated",
];

async function connectWeb(input) {
  const registry = registryFrom(base64Decode(input.descriptorSet));
  const options = {
    baseUrl: input.baseUrl,
    useBinaryFormat: Boolean(input.binary),
    jsonOptions: { registry },
  };
  const transport =
    input.protocol === "grpcweb"
      ? createGrpcWebTransport(options)
      : createConnectTransport({ ...options, useHttpGet: Boolean(input.useHttpGet) });
  return runCall(input.call, transport, registry);
}

// google.rpc.Status details from grpc-status-details-bin, as connect-es reports them.
function statusDetails(metadata, registry) {
  const value = metadata && metadata["grpc-status-details-bin"];
  const statusSchema = registry.getMessage("google.rpc.Status");
  if (!value || statusSchema === undefined) return [];
  const status = fromBinary(statusSchema, base64Decode(value));
  return status.details.map((any) => {
    const type = any.typeUrl.replace(/^.*\//, "");
    const out = { type, value: base64Encode(any.value) };
    const schema = registry.getMessage(type);
    if (schema !== undefined) out.json = toJson(schema, fromBinary(schema, any.value), { registry });
    return out;
  });
}

function grpcWebText(input) {
  const registry = registryFrom(base64Decode(input.descriptorSet));
  const spec = input.call;
  const { service, method } = findMethod(registry, spec.method);
  const path = `/${service.typeName}/${method.name}`;
  const streaming = method.methodKind === "server_streaming";
  if (!streaming && method.methodKind !== "unary") {
    throw new Error(`gRPC-Web has no ${method.methodKind} calls`);
  }
  const descriptor = new grpcWeb.MethodDescriptor(
    path,
    streaming ? grpcWeb.MethodType.SERVER_STREAMING : grpcWeb.MethodType.UNARY,
    Object,
    Object,
    (message) => toBinary(method.input, message),
    (bytes) => fromBinary(method.output, bytes),
  );
  const client = new grpcWeb.GrpcWebClientBase({ format: "text" });
  const metadata = { ...(spec.headers || {}) };
  if (spec.timeoutMs !== undefined && spec.timeoutMs !== null) {
    metadata.deadline = String(Date.now() + spec.timeoutMs); // sent as grpc-timeout
  }
  const request = fromJson(method.input, spec.request || {}, { registry });
  const output = (m) =>
    toJson(method.output, m, { registry, alwaysEmitImplicit: Boolean(spec.emitDefaults) });
  const result = { messages: [], headers: null, trailers: null, error: null, cancelled: false };
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve(result);
      }
    };
    const fail = (err) => {
      const code = typeof err.code === "number" ? err.code : 2;
      result.error = {
        code: CODES[code] || "unknown",
        codeNumber: code,
        message: err.message,
        details: statusDetails(err.metadata, registry),
        metadata: err.metadata || {},
      };
      finish();
    };
    let call;
    const url = input.baseUrl.replace(/\/$/, "") + path;
    if (streaming) {
      call = client.serverStreaming(url, request, metadata, descriptor);
      call.on("data", (message) => {
        result.messages.push(output(message));
        const n = spec.cancelAfter;
        if (n !== undefined && n !== null && result.messages.length >= n) {
          result.cancelled = true;
          call.cancel();
          finish();
        }
      });
      call.on("error", fail);
      call.on("end", finish);
    } else {
      call = client.rpcCall(url, request, metadata, descriptor, (err, response) => {
        if (err) fail(err);
        else {
          result.messages.push(output(response));
          // The status (trailers) event can come after the callback.
          setTimeout(finish, 0);
        }
      });
    }
    call.on("metadata", (headers) => (result.headers = { ...headers }));
    call.on("status", (status) => {
      result.trailers = { ...(status.metadata || {}) };
    });
  });
}

globalThis.jsClients = { connectWeb, grpcWebText };
