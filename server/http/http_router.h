// The HTTP port's request/response types and its router: plain data and a lookup table, no
// networking (the listener is http_server.h). Shared by /metrics, /healthz, /readyz and, later,
// the browser API (serving.md §6).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace longsana::server::http {

// One parsed request, as a handler sees it. Built by the server (or by ParseTarget in tests);
// plain data, no invariants beyond those ParseTarget establishes.
struct Request {
  std::string method;  // "GET", as sent (methods are case-sensitive)
  std::string target;  // "/v1/x?a=b", as sent
  std::string path;    // "/v1/x": percent-decoded, always starts with '/'
  std::string query;   // "a=b": raw, without the '?'
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
  std::string peer;                                // "127.0.0.1:5555", "[::1]:5555"
  std::map<std::string, std::string> path_params;  // filled by the router for "{name}" segments

  // The first header named `lower_name` (give it lower-cased); repeated headers are not joined.
  std::optional<std::string> Header(std::string_view lower_name) const;
  // The first `name=value` pair of the query whose decoded name is `name`, its value
  // percent-decoded with '+' as a space; "a" alone yields "". An invalid escape stays as written.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

// Splits a request-target into request.target/path/query. Accepts the origin form
// ("/p?q") and the absolute form ("http://host/p?q", RFC 9112 §3.2.2). InvalidArgument for any
// other form ("*", "host:port"), a bad percent escape in the path, or an escape that decodes to
// '/' or NUL (a decoded path is routed by its '/', so "%2F" would change the segments).
absl::Status ParseTarget(std::string_view target, Request& request);

// One complete response; the server adds Content-Length, Server and Connection.
struct Response {
  int status = 200;  // 200..599; anything else is answered as a 500 (a handler bug)
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra headers. Content-Length, Transfer-Encoding and Connection belong to the server and
  // are dropped here; Content-Type comes from content_type.
  std::vector<std::pair<std::string, std::string>> headers;

  static Response Text(int status, std::string body);
  static Response Json(int status, std::string body);  // body must already be JSON
  // {"error":{"code":<http status>,"status":"NOT_FOUND","message":"..."}} (JSON-escaped
  // message). `status_name` is the canonical (gRPC) code name, as Google's JSON APIs write it.
  static Response Error(int http_status, std::string_view status_name, std::string_view message);
};

// Runs on one of the server's io threads, which serve every connection: while a handler runs,
// its thread serves nobody else. So a handler must be quick and must not block (no waiting on
// the engine, no sleeping, no network); it may be called on several threads at once. An
// exception it throws becomes a 500 (see Router::Dispatch).
using Handler = std::function<Response(const Request&)>;

// A response whose body is produced over time (a video stream), implemented by the
// connection. Every method is thread-safe and returns at once; the work happens on the
// connection's io thread. Order: either Fail (a whole response, nothing sent before), or
// Begin, then Write*, then End (or Abort). The body goes out with Transfer-Encoding: chunked
// (close-delimited for HTTP/1.0) and the connection closes after it.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  // Instead of a stream: one complete response (e.g. a JSON error before the first byte).
  virtual void Fail(Response response) = 0;
  // Status line and headers (Content-Type from `content_type`; reserved headers dropped).
  virtual void Begin(int status, std::string content_type,
                     std::vector<std::pair<std::string, std::string>> headers) = 0;
  // Queues `bytes`; `done(ok)` runs on an io thread once they are written (ok) or the
  // connection failed (not ok). Each write has the server's write_timeout.
  virtual void Write(std::string bytes, std::function<void(bool ok)> done) = 0;
  virtual void End() = 0;    // the body is complete
  virtual void Abort() = 0;  // closes the connection: the client sees a truncated body
  // Runs once, on an io thread, when the client goes away (or a write fails) before End or
  // Fail went out; not after. Set it before Begin.
  virtual void SetOnClose(std::function<void()> on_close) = 0;
};

// Called on an io thread with the request and its stream: it must return quickly (start the
// work, then feed the stream from wherever the data comes).
using StreamHandler = std::function<void(Request, std::shared_ptr<ResponseStream>)>;

// A WebSocket connection (RFC 6455) after the upgrade, implemented by the connection. Every
// method is thread-safe and returns at once; callbacks run on the connection's io thread, one
// at a time, and must be quick (see Handler). Order: Start once, then Read / Send / Close.
//
// Reading is pulled: the connection keeps reading frames (so pings and the peer's close are
// answered at once) into a small queue, and hands the handler one message per Read. When the
// queue is full the connection stops reading, so a handler that stops calling Read slows the
// peer down through TCP; one that takes none for half the server's idle_timeout has the
// connection closed (1008). A message above the server's max_body_bytes ends the connection (a
// 1009 close frame, which a reset may overtake while the message is still arriving).
class WebSocket {
 public:
  struct Handlers {
    // One message per Read: its payload and whether it came as a binary message.
    std::function<void(std::string message, bool binary)> on_message;
    // Once, when the peer closed or the connection failed before Close; never after Close.
    std::function<void()> on_close;
  };
  virtual ~WebSocket() = default;
  virtual void Start(Handlers handlers) = 0;
  // Delivers the next message to on_message, no earlier than `delay` from now.
  virtual void Read(std::chrono::nanoseconds delay = std::chrono::nanoseconds::zero()) = 0;
  // Queues one message (text or binary); `done(ok)` runs once it is written (ok) or the
  // connection is gone (not ok). Each write has the server's write_timeout.
  virtual void Send(std::string message, bool binary, std::function<void(bool ok)> done) = 0;
  // Once the queued messages are written: the close handshake with `code` and `reason` (at
  // most 123 bytes, cut otherwise), then the connection closes.
  virtual void Close(uint16_t code, std::string reason) = 0;
};

// Called on an io thread once the upgrade is accepted (101 sent).
using WebSocketHandler = std::function<void(Request, std::shared_ptr<WebSocket>)>;

// Method + path pattern -> handler. Built once before the server starts (Handle is not
// thread-safe), then immutable and shared by all connections: Dispatch is const and safe to
// call from any number of threads at once.
//
// Patterns are absolute paths split at '/': "/metrics", "/v1/sessions/{id}/watch". A segment
// "{name}" matches exactly one non-empty segment and stores it (percent-decoded, from
// Request::path) in path_params[name]. Where an exact segment and a parameter both fit, the
// exact one wins; if the exact branch has no route for the rest of the path (or not for this
// method), the parameter branch is tried. No trailing-slash folding: "/metrics/" is not
// "/metrics".
//
// A route carries either a Handler (Dispatch answers it) or a StreamHandler (the connection
// looks it up with FindStream first and hands it a ResponseStream), or a WebSocketHandler (a
// GET with `Upgrade: websocket`, found with FindWebSocket; a plain GET there is a 426).
class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // `pattern` is an absolute path; a segment "{name}" matches one non-empty segment into
  // path_params[name]. Exact segments win over parameters. GET routes also answer HEAD (no
  // body; an explicit HEAD route wins). A malformed pattern ("", no leading '/', "{}", "{a",
  // two parameter names at one position) or a second handler for the same method and pattern
  // is a programming error: it aborts, naming the pattern.
  void Handle(std::string method, std::string pattern, Handler handler);
  // A streaming route (same pattern rules; no implicit HEAD).
  void HandleStream(std::string method, std::string pattern, StreamHandler handler);
  // The streaming handler for request's method and path (path_params filled), or nullptr:
  // then Dispatch answers it.
  const StreamHandler* FindStream(Request& request) const;
  // A WebSocket route (same pattern rules; reached by a GET upgrade request).
  void HandleWebSocket(std::string pattern, WebSocketHandler handler);
  const WebSocketHandler* FindWebSocket(Request& request) const;

  // Fills request.path_params and runs the matching handler. Unknown path: 404 Error; known
  // path, other method: 405 Error with an Allow header; a handler that throws: 500 Error
  // (logged with method and path, never the query), never a crash. For HEAD the GET handler's
  // response comes back whole; the server sends its headers only.
  Response Dispatch(Request& request) const;

 private:
  struct Node;
  template <typename T, typename Pick>
  const T* Find(Request& request, Pick pick) const;
  Node* NodeFor(const std::string& method, const std::string& pattern);
  std::unique_ptr<Node> root_;
};

// A query's name=value pairs in order, both percent-decoded with '+' as a space ("a" alone:
// value ""); empty pairs ("a=1&&b=2") are skipped.
std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view query);

// %XX escapes decoded (and '+' as a space when `plus_is_space`, the query convention);
// an invalid escape stays as written.
std::string PercentDecode(std::string_view s, bool plus_is_space = false);

}  // namespace longsana::server::http
