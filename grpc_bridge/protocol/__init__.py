"""Wire protocols: how an HTTP request asks for a call and how its answer is written.

One module per protocol, each a :class:`~grpc_bridge.protocol.base.WireProtocol`:

- ``json.py``: the JSON family (REST/JSON unary, NDJSON and SSE streams,
  NDJSON / JSON-array request streams, WebSocket), carried out by its
  ``json_*.py`` handlers;
- ``grpc_web.py``, ``connect.py`` (and their ``grpc_web_*`` / ``connect_*``
  parts): gRPC-Web and Connect, for browser clients.

What every protocol's call goes through (bodies, the streaming core,
compression) is in ``grpc_bridge/pipeline/``; the edges that pick a protocol
and call it are ``grpc_bridge/edge/`` (both HTTP/1.1 edges and the h2c one) and the
admin port.

A protocol decides from the request whether it is the one asked for
(``claims``), serves a routed call, writes every error in its own shape
(the bridge's own refusals included: 404, 405, 413, 415, 503, 504), and tells
CORS which request headers its clients send and which response headers they
read. ``select.py`` finds the protocol a request's Content-Type names (its
``media_types``) and asks it; where none is named, each in turn, JSON last. A
protocol whose unary call is also steps on plain values (``base.PlainUnary``:
gRPC-Web, Connect) has it served by the lean HTTP/1.1 edge too, with those same
steps. Adding a protocol is one module here and one line in ``select.py``; see
docs/development.md.
"""
