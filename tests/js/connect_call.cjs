"use strict";
// One call through a connect-es transport, described by a JSON spec; the answer
// as JSON. Shared by the Node runner (connect_node.cjs) and the browser bundle
// (browser_entry.cjs), so both report calls the same way (tests/helpers/js_clients.py).
//
// Messages are looked up at run time in a FileDescriptorSet: no generated code,
// any service the tests start can be called.
const { createClient, ConnectError } = require("@connectrpc/connect");
const { codeToString } = require("@connectrpc/connect/protocol-connect");
const { createFileRegistry, fromBinary, fromJson, toJson } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");
const { base64Encode, base64Decode } = require("@bufbuild/protobuf/wire");

function registryFrom(bytes) {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
}

// "pkg.Svc/Method" (a leading "/" is allowed) to its service and method descriptors.
function findMethod(registry, path) {
  const [serviceName, methodName] = path.replace(/^\//, "").split("/");
  const service = registry.getService(serviceName);
  if (service === undefined) {
    throw new Error(`service ${serviceName} is not in the descriptor set`);
  }
  const method = service.methods.find((m) => m.name === methodName);
  if (method === undefined) {
    throw new Error(`method ${methodName} is not in service ${serviceName}`);
  }
  return { service, method };
}

// Headers to a plain object; repeated names are joined with ", " by Headers itself.
function headersObject(headers) {
  const out = {};
  if (headers) headers.forEach((value, key) => (out[key] = value));
  return out;
}

function detailJson(detail, registry) {
  const out = { type: detail.type, value: base64Encode(detail.value) };
  if (detail.debug !== undefined) out.debug = detail.debug;
  // Bare names are Connect's; Envoy 1.40 still sends type.googleapis.com/ URLs.
  const schema = registry.getMessage(detail.type.replace(/^.*\//, ""));
  if (schema !== undefined) {
    try {
      out.json = toJson(schema, fromBinary(schema, detail.value), { registry });
    } catch (e) {
      out.jsonError = String(e);
    }
  }
  return out;
}

function errorJson(reason, registry) {
  const err = ConnectError.from(reason);
  return {
    code: codeToString(err.code),
    codeNumber: err.code,
    message: err.rawMessage,
    details: err.details.filter((d) => "value" in d).map((d) => detailJson(d, registry)),
    metadata: headersObject(err.metadata),
  };
}

async function* messagesOf(list) {
  for (const message of list) yield message;
}

// spec: {method, request | requests, headers, timeoutMs, cancelAfter, emitDefaults}
async function runCall(spec, transport, registry) {
  const { service, method } = findMethod(registry, spec.method);
  const client = createClient(service, transport);
  const result = { messages: [], headers: null, trailers: null, error: null, cancelled: false };
  const controller = new AbortController();
  const options = {
    headers: spec.headers || {},
    signal: controller.signal,
    onHeader: (h) => (result.headers = headersObject(h)),
    onTrailer: (t) => (result.trailers = headersObject(t)),
  };
  if (spec.timeoutMs !== undefined && spec.timeoutMs !== null) options.timeoutMs = spec.timeoutMs;
  const output = (m) =>
    toJson(method.output, m, { registry, alwaysEmitImplicit: Boolean(spec.emitDefaults) });
  const inputs = (spec.requests || [spec.request || {}]).map((r) =>
    fromJson(method.input, r, { registry }),
  );
  const call = client[method.localName];
  const stop = () => {
    const n = spec.cancelAfter;
    if (n !== undefined && n !== null && result.messages.length >= n) {
      result.cancelled = true;
      controller.abort();
      return true;
    }
    return false;
  };
  try {
    switch (method.methodKind) {
      case "unary":
        result.messages.push(output(await call(inputs[0], options)));
        break;
      case "client_streaming":
        result.messages.push(output(await call(messagesOf(inputs), options)));
        break;
      case "server_streaming":
      case "bidi_streaming": {
        const input = method.methodKind === "server_streaming" ? inputs[0] : messagesOf(inputs);
        if (stop()) break;
        for await (const message of call(input, options)) {
          result.messages.push(output(message));
          if (stop()) break;
        }
        break;
      }
      default:
        throw new Error(`unknown method kind ${method.methodKind}`);
    }
  } catch (reason) {
    result.error = errorJson(reason, registry);
  }
  return result;
}

module.exports = { registryFrom, findMethod, runCall, headersObject, base64Decode, base64Encode };
