// The HTTP/1.1 listener of the HTTP port (serving.md §5-§6): Boost.Beast underneath (kept out
// of this header), a Router on top. Knows nothing of gRPC, the engine or metrics; the server
// registers its routes (/metrics, /healthz, /readyz, later the browser API) on the Router.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/http/http_router.h"

namespace longsana::server::http {

struct HttpServerOptions {
  std::string listen = "0.0.0.0:8080";  // host:port or [v6]:port; port 0 picks one
  int threads = 1;                      // io threads, [1, 256]
  // Open connections at most [1, 1'000'000]; a connection beyond is answered a fixed 503 (best
  // effort, one non-blocking write) and closed at accept, before any buffer is allocated.
  int max_connections = 256;
  size_t max_header_bytes = 16 * 1024;  // request line + headers; beyond: 431 and close
  size_t max_body_bytes = 1 << 20;      // beyond: 413 and close (checked on Content-Length first)
  // A request must arrive whole within this, counted from its first byte (on a new connection,
  // from the accept): a slow client (slowloris) is closed when it runs out.
  std::chrono::milliseconds request_timeout{10'000};
  // A keep-alive connection waiting for its next request is closed after this.
  std::chrono::milliseconds idle_timeout{60'000};
  // A response write that makes no progress (the client does not read) for this long closes the
  // connection. Per write, not per response, so a large response to a slow reader still goes.
  std::chrono::milliseconds write_timeout{10'000};
  // CORS: the origins ("https://app.example.com", exactly as browsers send Origin; "*" for
  // any) whose pages may read this server's responses and open its WebSockets. Empty: none
  // cross-origin. A same-origin page (Origin matching Host) and a client that sends no Origin
  // (curl, a backend) are always served. Preflights (OPTIONS with
  // Access-Control-Request-Method) are answered by the server itself.
  std::vector<std::string> cors_allowed_origins;
  // WebSocket messages read ahead of the handler's Read calls, [1, 1024]: with
  // max_body_bytes, what one WebSocket client can make the server hold.
  int websocket_read_ahead = 4;

  absl::Status Validate() const;  // InvalidArgument naming the field
};

// Serves HTTP/1.1 (keep-alive, pipelining) and HTTP/1.0 on `options.threads` io threads.
// Handlers run on those threads (see Handler: quick and non-blocking); each connection's
// handlers run one at a time, in request order.
//
// Every response carries Content-Length (HEAD: the GET's; 204/304: none), `Server:
// longsana-serve`, and `Connection: close` when the server closes after it: on the client's
// request, and after a 400 (malformed), 413 (body too large) or 431 (header too large). A request
// that times out is closed without an answer (Beast closes the socket on its timer). A connection
// whose socket fails is logged at debug and closed; nothing is logged per request at info.
// A connection holds at most max_header_bytes + 8 KiB of read buffer, a body of max_body_bytes
// and the response its handler made.
//
// Streaming (Router::HandleStream): the handler gets a ResponseStream and feeds it from any
// thread; the connection writes the status line, then each piece as one chunk
// (Transfer-Encoding: chunked; close-delimited for HTTP/1.0), every write under
// write_timeout, and closes after the body. While streaming, the connection's only read
// watches for the client's close: a client that goes away before the end triggers the
// stream's on-close callback (the server cancels the session). Plain responses are written
// by a loop of `write_some` calls, each under write_timeout.
//
// WebSocket (Router::HandleWebSocket): a GET with `Upgrade: websocket` to such a route is
// accepted (101) unless its Origin is not allowed (403, see cors_allowed_origins); the handler
// then gets a WebSocket. Beast's websocket stream runs it: pings every idle_timeout / 2 while the
// peer is silent and a close when it does not answer, messages up to max_body_bytes.
//
// Thread-safety: port(), address() and Stop() may be called from any thread, concurrently;
// Stop() must not be called from a handler (it joins the io threads).
class HttpServer {
 public:
  // Binds and starts serving on options.threads threads. InvalidArgument for bad options,
  // Unavailable when the address cannot be bound or resolved (the message names the address).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::shared_ptr<const Router> router);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();  // Stop()

  int port() const;             // the bound port (the real one when options asked for 0)
  std::string address() const;  // "127.0.0.1:41234", "[::1]:41234"

  // Stops accepting, closes every connection (a response being written is cut), joins the
  // threads. Idempotent, thread-safe; returns once no handler runs any more.
  void Stop();

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace longsana::server::http
