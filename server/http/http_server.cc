// The only translation unit that includes Boost.Beast/Asio (they cost seconds per TU).
#include "server/http/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <charconv>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace longsana::server::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// After a closing response the server shuts its sending side and reads what the client still
// sends, for a while, before closing: closing with unread input makes the kernel send a reset,
// which can destroy the response (a 413 while the body is still coming) before the client reads
// it.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr size_t kLingerBytes = 256 * 1024;
// Room in the read buffer beyond the header limit, so that an oversized header meets the
// parser's limit (431) rather than a full buffer, and body bytes stream through in pieces.
constexpr size_t kReadSlackBytes = 8 * 1024;
constexpr size_t kIdleReadBytes = 1024;
constexpr std::chrono::milliseconds kAcceptRetry{50};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

absl::Status Bad(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("http {}: {}", field, why));
}

struct HostPort {
  std::string host;  // without brackets
  unsigned short port = 0;
};

// "host:port", "[v6]:port". (server_config's ParseHostPort lives in longsana_server_lib, which
// links this library; this small copy avoids the cycle.)
absl::StatusOr<HostPort> SplitHostPort(std::string_view text) {
  HostPort out;
  std::string_view port_text;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Bad("listen", fmt::format("'{}' is not [ipv6]:port", text));
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Bad("listen", fmt::format("'{}' is not host:port", text));
    }
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  int port = -1;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Bad("listen", fmt::format("'{}' has no port in [0, 65535]", text));
  }
  out.port = static_cast<unsigned short>(port);
  return out;
}

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  const net::ip::address address = endpoint.address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), endpoint.port())
                         : fmt::format("{}:{}", address.to_string(), endpoint.port());
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A header a handler may set: a token name, a value without line breaks (no response
// splitting), and not one of the headers the connection owns.
bool IsSettableHeader(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (const char c : name) {
    if (c <= ' ' || c >= 0x7f || c == ':') return false;
  }
  for (const char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  const std::string lower = Lower(name);
  return lower != "content-length" && lower != "transfer-encoding" && lower != "connection" &&
         lower != "content-type";
}

// What every connection reads; owned by the server, outlives the connections (the io_context,
// and with it every connection, is destroyed first).
struct Shared {
  HttpServerOptions options;
  std::shared_ptr<const Router> router;
  std::atomic<int> connections{0};
};

// "http://Host:8080" and a Host header "host:8080": the same origin (scheme aside: behind a
// TLS-terminating proxy the page's scheme is not ours to know).
bool IsSameOrigin(std::string_view origin, std::string_view host) {
  const size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos || host.empty()) return false;
  return Lower(origin.substr(scheme + 3)) == Lower(host);
}

// The CORS verdict for a request's Origin header.
enum class OriginVerdict { kNone, kSameOrigin, kAllowed, kRefused };

OriginVerdict CheckOrigin(const HttpServerOptions& options, const Request& request) {
  const std::optional<std::string> origin = request.Header("origin");
  if (!origin.has_value()) return OriginVerdict::kNone;
  for (const std::string& allowed : options.cors_allowed_origins) {
    if (allowed == "*" || allowed == *origin) return OriginVerdict::kAllowed;
  }
  if (IsSameOrigin(*origin, request.Header("host").value_or(""))) return OriginVerdict::kSameOrigin;
  return OriginVerdict::kRefused;
}

// The headers that let an allowed cross-origin page read a response.
std::vector<std::pair<std::string, std::string>> CorsHeaders(const HttpServerOptions& options,
                                                             const Request& request) {
  if (CheckOrigin(options, request) != OriginVerdict::kAllowed) return {};
  return {{"Access-Control-Allow-Origin", *request.Header("origin")},
          {"Vary", "Origin"},
          {"Access-Control-Expose-Headers", "X-Request-Id, X-Session-Id, Retry-After"}};
}

// OPTIONS with Access-Control-Request-Method: what a cross-origin page may send.
Response Preflight(const HttpServerOptions& options, const Request& request) {
  Response response;
  response.status = 204;
  response.content_type.clear();
  response.headers = CorsHeaders(options, request);
  if (!response.headers.empty()) {
    response.headers.emplace_back("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
    response.headers.emplace_back("Access-Control-Allow-Headers",
                                  "authorization, x-request-id, content-type");
    response.headers.emplace_back("Access-Control-Max-Age", "600");
  }
  return response;
}

// A handler-side handle on a connection: runs calls on the connection's strand while the
// connection lives; Post returns false (and runs nothing) once it is gone.
template <typename C>
class StrandHandle {
 public:
  StrandHandle(const std::shared_ptr<C>& connection, net::any_io_executor executor)
      : connection_(connection), executor_(std::move(executor)) {}
  template <typename F>
  bool Post(F&& f) {
    std::shared_ptr<C> c = connection_.lock();
    if (c == nullptr) return false;
    net::post(executor_, [c, f = std::forward<F>(f)]() mutable { f(*c); });
    return true;
  }

 private:
  std::weak_ptr<C> connection_;
  net::any_io_executor executor_;
};

// One upgraded connection: Beast's websocket stream, one write and one read in flight, every
// member touched only on its strand. Lives as long as the handler's Socket or an asynchronous
// operation holds it; its handlers are dropped once it ends (they may hold the Socket).
class WsConnection : public std::enable_shared_from_this<WsConnection> {
 public:
  WsConnection(beast::tcp_stream stream, Shared& shared, std::string peer)
      : ws_(std::move(stream)),
        shared_(shared),
        peer_(std::move(peer)),
        read_timer_(ws_.get_executor()),
        await_timer_(ws_.get_executor()),
        write_timer_(ws_.get_executor()) {
    shared_.connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~WsConnection() { shared_.connections.fetch_sub(1, std::memory_order_relaxed); }

  void Accept(bhttp::request<bhttp::string_body> upgrade, const WebSocketHandler& handler,
              Request request);

 private:
  class Socket;
  friend class Socket;
  struct Out {
    std::string bytes;
    bool binary = false;
    std::function<void(bool)> done;
  };

  void OnAccepted(const WebSocketHandler& handler, Request request);
  void ReadFrame() {
    if (gone_ || reading_) return;
    if (inbox_.size() >= static_cast<size_t>(options().websocket_read_ahead)) {
      return AwaitRead();
    }
    reading_ = true;
    ws_.async_read(read_buffer_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (ec) {
        if (ec != websocket::error::closed && ec != net::error::operation_aborted) {
          spdlog::debug("http {}: websocket read ended: {}", self->peer_, ec.message());
        }
        return self->Gone();
      }
      self->inbox_.push_back(
          {beast::buffers_to_string(self->read_buffer_.data()), self->ws_.got_binary(), nullptr});
      self->read_buffer_.consume(self->read_buffer_.size());
      self->Deliver();
      self->ReadFrame();
    });
  }
  // The read-ahead is full and nothing may be in flight: this wait keeps the connection alive
  // for idle_timeout / 2, then closes it (1008) unless the handler took a message meanwhile.
  // (Half: not reading, the stream cannot see the peer's pongs either, and Beast would drop
  // the connection without a close frame at idle_timeout.)
  void AwaitRead() {
    if (await_armed_) return;
    await_armed_ = true;
    await_timer_.expires_after(options().idle_timeout / 2);
    await_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->await_armed_ = false;
      if (self->gone_) return;
      if (!ec && self->inbox_.size() >= static_cast<size_t>(self->options().websocket_read_ahead)) {
        spdlog::info("http {}: websocket closed: its messages were not taken for {} ms",
                     self->peer_, self->options().idle_timeout.count() / 2);
        return self->StartClose(static_cast<uint16_t>(websocket::close_code::policy_error),
                                "messages not taken");
      }
      self->ReadFrame();
    });
  }
  // Hands the oldest queued message to the handler if it asked for one.
  void Deliver() {
    while (!gone_ && wanted_ > 0 && !inbox_.empty() && !delaying_) {
      --wanted_;
      Out message = std::move(inbox_.front());
      inbox_.pop_front();
      if (handlers_.on_message) handlers_.on_message(std::move(message.bytes), message.binary);
    }
    if (await_armed_ && inbox_.size() < static_cast<size_t>(options().websocket_read_ahead)) {
      await_timer_.cancel();  // its handler runs at once and reads on
      return;
    }
    ReadFrame();  // room again in the queue
  }
  void Want(std::chrono::nanoseconds delay) {
    if (gone_) return;
    ++wanted_;
    if (delay <= delay.zero()) return Deliver();
    delaying_ = true;
    read_timer_.expires_after(delay);
    read_timer_.async_wait([self = shared_from_this()](beast::error_code) {
      self->delaying_ = false;
      self->Deliver();
    });
  }
  void Queue(Out out) {
    if (gone_ || closing_) {
      if (out.done) out.done(false);
      return;
    }
    outbox_.push_back(std::move(out));
    Pump();
  }
  void Pump() {
    if (writing_ || gone_) return;
    if (outbox_.empty()) {
      if (closing_ && !close_sent_) SendClose();
      return;
    }
    writing_ = true;
    ws_.binary(outbox_.front().binary);
    ArmWriteTimer();
    ws_.async_write(net::buffer(outbox_.front().bytes), [self = shared_from_this()](
                                                            beast::error_code ec, size_t) {
      self->writing_ = false;
      self->write_timer_.cancel();
      if (ec) {
        spdlog::debug("http {}: websocket write failed: {}", self->peer_, ec.message());
        return self->Gone();
      }
      Out done = std::move(self->outbox_.front());
      self->outbox_.pop_front();
      if (done.done) done.done(true);
      self->Pump();
    });
  }
  void StartClose(uint16_t code, std::string reason) {
    if (closing_ || gone_) return;
    closing_ = true;
    if (reason.size() > 123) reason.resize(123);
    close_reason_ = websocket::close_reason(static_cast<websocket::close_code>(code), reason);
    Pump();
  }
  void SendClose() {
    close_sent_ = true;
    writing_ = true;
    ArmWriteTimer();
    ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code ec) {
      self->writing_ = false;
      self->write_timer_.cancel();
      if (ec) spdlog::debug("http {}: websocket close: {}", self->peer_, ec.message());
      self->gone_ = true;  // after our close, the peer's leaving is no news
      self->Fail();
      self->handlers_ = {};  // they may hold the socket, which holds this connection
    });
  }
  // A write (or the close) that makes no progress for write_timeout closes the socket; the
  // operation then fails and the connection is gone. Our own timer, not the tcp_stream's
  // expiry: Beast's websocket stream runs its own timers and wants the lowest layer's off, and
  // an expiry set around a write also becomes the deadline of a read started meanwhile (a
  // tcp_stream applies its expiry to every operation that begins while it is set), which
  // dropped sessions whose client was silent for write_timeout after an earlier write.
  void ArmWriteTimer() {
    write_timer_.expires_after(options().write_timeout);
    write_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->gone_ || !self->writing_) return;
      spdlog::info("http {}: websocket closed: a write made no progress for {} ms", self->peer_,
                   self->options().write_timeout.count());
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().close(ignored);
    });
  }
  // The peer closed or the connection failed.
  void Gone() {
    if (gone_) return;
    gone_ = true;
    Fail();
    if (!closing_) {
      if (auto on_close = std::move(handlers_.on_close)) on_close();
    }
    handlers_ = {};
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }
  void Fail() {
    std::deque<Out> pending;
    pending.swap(outbox_);
    for (Out& out : pending) {
      if (out.done) out.done(false);
    }
    read_timer_.cancel();
    await_timer_.cancel();
    write_timer_.cancel();
    if (gone_ && close_sent_) {
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().close(ignored);
    }
  }
  const HttpServerOptions& options() const { return shared_.options; }

  websocket::stream<beast::tcp_stream> ws_;
  Shared& shared_;
  const std::string peer_;
  WebSocket::Handlers handlers_;
  beast::flat_buffer read_buffer_;
  std::deque<Out> inbox_;   // messages read ahead (done unused)
  std::deque<Out> outbox_;  // messages to write
  net::steady_timer read_timer_;
  net::steady_timer await_timer_;
  net::steady_timer write_timer_;  // the write in flight's deadline (write_timeout)
  bool await_armed_ = false;
  int wanted_ = 0;  // Read calls not yet answered
  bool delaying_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool gone_ = false;
  websocket::close_reason close_reason_;
};

// The handler's view: every call is posted onto the connection's strand; a connection that is
// gone ignores them (and fails the write callbacks).
class WsConnection::Socket final : public WebSocket {
 public:
  explicit Socket(const std::shared_ptr<WsConnection>& connection)
      : strand_(connection, connection->ws_.get_executor()) {}
  // A handler that lets go of its socket without closing it ends the connection (1001).
  ~Socket() override {
    Post([](WsConnection& c) {
      c.StartClose(static_cast<uint16_t>(websocket::close_code::going_away), "going away");
    });
  }

  void Start(Handlers handlers) override {
    Post([handlers = std::move(handlers)](WsConnection& c) mutable {
      if (c.gone_) {
        if (handlers.on_close) handlers.on_close();
        return;
      }
      c.handlers_ = std::move(handlers);
      c.ReadFrame();
    });
  }
  void Read(std::chrono::nanoseconds delay) override {
    Post([delay](WsConnection& c) { c.Want(delay); });
  }
  void Send(std::string message, bool binary, std::function<void(bool)> done) override {
    auto shared_done = std::make_shared<std::function<void(bool)>>(std::move(done));
    const bool posted =
        Post([message = std::move(message), binary, shared_done](WsConnection& c) mutable {
          c.Queue({std::move(message), binary, std::move(*shared_done)});
        });
    if (!posted && *shared_done) (*shared_done)(false);
  }
  void Close(uint16_t code, std::string reason) override {
    Post([code, reason = std::move(reason)](WsConnection& c) mutable {
      c.StartClose(code, std::move(reason));
    });
  }

 private:
  template <typename F>
  bool Post(F&& f) {
    return strand_.Post(std::forward<F>(f));
  }

  // Weak: the connection must never outlive the server's io_context, whoever holds this.
  StrandHandle<WsConnection> strand_;
};

void WsConnection::Accept(bhttp::request<bhttp::string_body> upgrade,
                          const WebSocketHandler& handler, Request request) {
  beast::get_lowest_layer(ws_).expires_never();  // the websocket stream's own timers from here
  websocket::stream_base::timeout timeout;
  timeout.handshake_timeout = options().request_timeout;
  timeout.idle_timeout = options().idle_timeout;
  timeout.keep_alive_pings = true;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
    response.set(bhttp::field::server, "longsana-serve");
  }));
  ws_.read_message_max(options().max_body_bytes);
  auto message = std::make_shared<bhttp::request<bhttp::string_body>>(std::move(upgrade));
  ws_.async_accept(*message, [self = shared_from_this(), message, &handler,
                              request = std::move(request)](beast::error_code ec) mutable {
    if (ec) {
      spdlog::debug("http {}: websocket handshake failed: {}", self->peer_, ec.message());
      return;
    }
    self->OnAccepted(handler, std::move(request));
  });
}

void WsConnection::OnAccepted(const WebSocketHandler& handler, Request request) {
  auto socket = std::make_shared<Socket>(shared_from_this());
  try {
    handler(std::move(request), socket);
  } catch (const std::exception& e) {
    spdlog::error("http: a websocket handler threw: {}", e.what());
    StartClose(static_cast<uint16_t>(websocket::close_code::internal_error), "the handler failed");
  }
}

// One accepted connection. Lives as long as an asynchronous operation holds it; every member is
// touched only on its strand.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Shared& shared, std::string peer)
      : stream_(std::move(socket)),
        buffer_(shared.options.max_header_bytes + kReadSlackBytes),
        shared_(shared),
        peer_(std::move(peer)) {
    shared_.connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~Connection() { shared_.connections.fetch_sub(1, std::memory_order_relaxed); }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadRequest(); });
  }

 private:
  const HttpServerOptions& options() const { return shared_.options; }

  // Between requests: wait for a first byte under idle_timeout.
  void WaitForRequest() {
    stream_.expires_after(options().idle_timeout);
    stream_.async_read_some(buffer_.prepare(kIdleReadBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              if (ec) return self->OnReadError(ec);
                              self->ReadRequest();
                            });
  }

  // The whole request under request_timeout (header first, for Expect: 100-continue).
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options().max_header_bytes));
    parser_->body_limit(options().max_body_bytes);
    stream_.expires_after(options().request_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    if (parser_->is_done()) return OnRequest();
    const auto& header = parser_->get();
    if (header.version() >= 11 && beast::iequals(header[bhttp::field::expect], "100-continue")) {
      net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->OnReadError(ec);
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->OnReadError(ec);
                        self->OnRequest();
                      });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof)
      return;  // closed between requests
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      return RespondAndClose(
          Response::Error(431, "RESOURCE_EXHAUSTED", "request header too large"));
    }
    if (ec == bhttp::error::body_limit) {
      return RespondAndClose(Response::Error(413, "RESOURCE_EXHAUSTED", "request body too large"));
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::partial_message) {
      return RespondAndClose(Response::Error(400, "INVALID_ARGUMENT",
                                             fmt::format("malformed request: {}", ec.message())));
    }
    // A timeout (the stream is already closed), a reset, a request cut short: nobody to answer.
    spdlog::debug("http {}: connection closed: {}", peer_, ec.message());
  }

  void OnRequest() {
    bhttp::request<bhttp::string_body> message = parser_->release();
    parser_.reset();
    Request request;
    if (absl::Status s = ParseTarget(
            std::string_view(message.target().data(), message.target().size()), request);
        !s.ok()) {
      return RespondAndClose(Response::Error(400, "INVALID_ARGUMENT", std::string(s.message())));
    }
    request.method = std::string(message.method_string());
    request.headers.reserve(std::distance(message.begin(), message.end()));
    for (const auto& field : message) {
      request.headers.emplace_back(
          Lower(std::string_view(field.name_string().data(), field.name_string().size())),
          std::string(field.value()));
    }
    request.body = std::move(message.body());
    request.peer = peer_;
    const bool head = message.method() == bhttp::verb::head;
    cors_headers_ = CorsHeaders(options(), request);
    if (websocket::is_upgrade(message)) {
      if (const WebSocketHandler* handler = shared_.router->FindWebSocket(request)) {
        return Upgrade(std::move(message), *handler, std::move(request));
      }
    }
    if (const StreamHandler* handler = shared_.router->FindStream(request)) {
      return StartStream(*handler, std::move(request), message.version());
    }
    if (message.method() == bhttp::verb::options &&
        request.Header("access-control-request-method").has_value()) {
      cors_headers_.clear();  // Preflight sets its own
      return Respond(Preflight(options(), request), message.version(), false,
                     !message.keep_alive());
    }
    Respond(shared_.router->Dispatch(request), message.version(), head, !message.keep_alive());
  }

  // Hands the socket to a WsConnection (this connection ends here) unless the page's origin
  // may not open it (a cross-site page must not drive sessions with the user's network).
  void Upgrade(bhttp::request<bhttp::string_body> message, const WebSocketHandler& handler,
               Request request) {
    if (CheckOrigin(options(), request) == OriginVerdict::kRefused) {
      spdlog::info("http {}: websocket from origin '{}' refused (not in cors_allowed_origins)",
                   peer_, request.Header("origin").value_or(""));
      return RespondAndClose(Response::Error(
          403, "PERMISSION_DENIED",
          fmt::format("origin '{}' may not open this WebSocket (see --cors-allowed-origins)",
                      request.Header("origin").value_or(""))));
    }
    auto ws = std::make_shared<WsConnection>(std::move(stream_), shared_, peer_);
    ws->Accept(std::move(message), handler, std::move(request));
  }

  // --- Streaming responses (ResponseStream). Strand-only state below; the stream object
  // posts onto the strand. The connection closes after a stream.
  class Stream;
  friend class Stream;

  void StartStream(const StreamHandler& handler, Request request, unsigned version);
  void StreamFail(Response response) {
    if (stream_state_ != StreamState::kWaiting) return;
    if (response.status < 200 || response.status > 599) {
      response = Response::Error(500, "INTERNAL", "the handler gave an invalid status");
    }
    // Written through the stream's own writer (the close watcher stays the only reader).
    std::string text = StatusAndHeaders(response.status, response.content_type, response.headers);
    text += fmt::format("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.size());
    text += response.body;
    stream_state_ = StreamState::kEnding;
    QueueWrite(std::move(text), nullptr);
  }
  void StreamBegin(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) {
    if (stream_state_ != StreamState::kWaiting) return;
    stream_state_ = StreamState::kStreaming;
    if (status < 200 || status > 599) status = 500;
    std::string head = StatusAndHeaders(status, content_type, headers);
    if (stream_version_ >= 11) head += "Transfer-Encoding: chunked\r\n";
    head += "Connection: close\r\n\r\n";
    QueueWrite(std::move(head), nullptr);
  }
  std::string StatusAndHeaders(int status, const std::string& content_type,
                               const std::vector<std::pair<std::string, std::string>>& headers) {
    const beast::string_view reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    std::string head =
        fmt::format("HTTP/1.{} {} {}\r\nServer: longsana-serve\r\n", stream_version_ >= 11 ? 1 : 0,
                    status, std::string(reason.data(), reason.size()));
    if (!content_type.empty() && IsSettableHeader("x", content_type)) {
      head += fmt::format("Content-Type: {}\r\n", content_type);
    }
    for (const auto& [name, value] : cors_headers_) head += fmt::format("{}: {}\r\n", name, value);
    for (const auto& [name, value] : headers) {
      if (IsSettableHeader(name, value)) {
        head += fmt::format("{}: {}\r\n", name, value);
      } else {
        spdlog::error("http: dropped response header '{}' (reserved or malformed)", name);
      }
    }
    return head;
  }
  void StreamWrite(std::string bytes, std::function<void(bool)> done) {
    if (stream_state_ != StreamState::kStreaming || bytes.empty()) {
      if (done) done(stream_state_ == StreamState::kStreaming);
      return;
    }
    if (stream_version_ >= 11) {
      std::string frame = fmt::format("{:x}\r\n", bytes.size());
      frame += bytes;
      frame += "\r\n";
      bytes = std::move(frame);
    }
    QueueWrite(std::move(bytes), std::move(done));
  }
  void StreamEnd() {
    if (stream_state_ != StreamState::kStreaming) return;
    stream_state_ = StreamState::kEnding;
    QueueWrite(stream_version_ >= 11 ? std::string("0\r\n\r\n") : std::string(), nullptr);
  }
  void StreamAbort() {
    if (stream_state_ == StreamState::kDone) return;
    stream_state_ = StreamState::kDone;
    FailPendingWrites();
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }
  void StreamClientGone() {
    if (stream_state_ == StreamState::kDone || stream_state_ == StreamState::kEnded) return;
    stream_state_ = StreamState::kDone;
    FailPendingWrites();
    if (auto on_close = std::move(on_close_)) on_close();
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }
  void FailPendingWrites() {
    std::deque<PendingWrite> pending;
    pending.swap(writes_);
    for (auto& w : pending) {
      if (w.done) w.done(false);
    }
  }
  void QueueWrite(std::string bytes, std::function<void(bool)> done) {
    writes_.push_back({std::move(bytes), std::move(done)});
    PumpWrites();
  }
  void PumpWrites() {
    if (writing_ || writes_.empty()) return;
    writing_ = true;
    stream_.expires_after(options().write_timeout);
    net::async_write(stream_, net::buffer(writes_.front().bytes),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       // The timeout is per write: no deadline while waiting for the next
                       // chunk (tcp_stream would otherwise fail the next write at once).
                       self->stream_.expires_never();
                       if (ec) {
                         spdlog::debug("http {}: stream write failed: {}", self->peer_,
                                       ec.message());
                         return self->StreamClientGone();
                       }
                       PendingWrite done = std::move(self->writes_.front());
                       self->writes_.pop_front();
                       if (done.done) done.done(true);
                       if (self->writes_.empty() && self->stream_state_ == StreamState::kEnding) {
                         self->stream_state_ = StreamState::kEnded;
                         return self->StreamLinger();
                       }
                       self->PumpWrites();
                     });
  }
  // After the last chunk: stop sending, let the watcher read the client's close, and close
  // after kLingerTime whatever happens (the watcher then ends).
  void StreamLinger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger_timer_.emplace(stream_.get_executor());
    linger_timer_->expires_after(kLingerTime);
    linger_timer_->async_wait([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      self->stream_.socket().close(ignored);
    });
  }
  // While streaming, the only reader: discards what the client sends; its end (or an error)
  // before the stream ended means the client is gone.
  void WatchForClose() {
    stream_.socket().async_read_some(net::buffer(watch_buffer_),
                                     [self = shared_from_this()](beast::error_code ec, size_t) {
                                       if (ec) {
                                         if (self->stream_state_ != StreamState::kEnded)
                                           self->StreamClientGone();
                                         return;
                                       }
                                       self->WatchForClose();
                                     });
  }

  void RespondAndClose(Response response) { Respond(std::move(response), 11, false, true); }

  void Respond(Response response, unsigned version, bool head, bool close) {
    if (response.status < 200 || response.status > 599) {
      spdlog::error("http: a handler answered status {}; sending 500", response.status);
      response = Response::Error(500, "INTERNAL", "the handler gave an invalid status");
    }
    auto& res = response_.emplace();
    res.version(version);
    res.result(static_cast<unsigned>(response.status));
    res.set(bhttp::field::server, "longsana-serve");
    if (!response.content_type.empty()) res.set(bhttp::field::content_type, response.content_type);
    for (const auto& [name, value] : cors_headers_) res.insert(name, value);
    for (const auto& [name, value] : response.headers) {
      if (IsSettableHeader(name, value)) {
        res.insert(name, value);
      } else {
        spdlog::error("http: dropped response header '{}' (reserved or malformed)", name);
      }
    }
    // 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6); HEAD announces the GET's.
    if (response.status != 204 && response.status != 304) {
      res.content_length(response.body.size());
      if (!head) res.body() = std::move(response.body);
    }
    res.keep_alive(!close);
    if (close) res.set(bhttp::field::connection, "close");
    close_after_write_ = close;
    serializer_.emplace(res);
    WriteSome();
  }

  // One write_some at a time, each under write_timeout: a slow reader gets time as long as it
  // reads, a client that stops reading is cut (and a streaming body can feed this loop later).
  void WriteSome() {
    stream_.expires_after(options().write_timeout);
    bhttp::async_write_some(
        stream_, *serializer_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWriteSome(ec); });
  }

  void OnWriteSome(beast::error_code ec) {
    if (ec) {
      spdlog::debug("http {}: write failed: {}", peer_, ec.message());
      return;
    }
    if (!serializer_->is_done()) return WriteSome();
    serializer_.reset();
    response_.reset();
    if (close_after_write_) return Linger();
    if (buffer_.size() > 0) return ReadRequest();  // a pipelined request is already here
    WaitForRequest();
  }

  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    lingered_bytes_ = 0;
    Drain();
  }

  void Drain() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(std::min(kReadSlackBytes, buffer_.max_size())),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->lingered_bytes_ += n;
                              if (ec || self->lingered_bytes_ > kLingerBytes) return;
                              self->Drain();
                            });
  }

  enum class StreamState { kNone, kWaiting, kStreaming, kEnding, kEnded, kDone };
  struct PendingWrite {
    std::string bytes;
    std::function<void(bool)> done;
  };
  StreamState stream_state_ = StreamState::kNone;
  unsigned stream_version_ = 11;
  std::deque<PendingWrite> writes_;
  bool writing_ = false;
  std::function<void()> on_close_;
  std::array<char, 1024> watch_buffer_{};
  std::optional<net::steady_timer> linger_timer_;

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::string_body>> response_;
  std::optional<bhttp::response_serializer<bhttp::string_body>> serializer_;
  bool close_after_write_ = false;
  size_t lingered_bytes_ = 0;
  std::vector<std::pair<std::string, std::string>> cors_headers_;  // for the current request
  Shared& shared_;
  const std::string peer_;
};

// The handler's view of a streaming response: every call is posted onto the connection's
// strand; a connection that is gone ignores them (and fails the write callbacks).
class Connection::Stream final : public ResponseStream {
 public:
  explicit Stream(const std::shared_ptr<Connection>& connection)
      : strand_(connection, connection->stream_.get_executor()) {}

  void Fail(Response response) override {
    Post([response = std::move(response)](Connection& c) mutable {
      c.StreamFail(std::move(response));
    });
  }
  void Begin(int status, std::string content_type,
             std::vector<std::pair<std::string, std::string>> headers) override {
    Post([status, content_type = std::move(content_type),
          headers = std::move(headers)](Connection& c) mutable {
      c.StreamBegin(status, std::move(content_type), std::move(headers));
    });
  }
  void Write(std::string bytes, std::function<void(bool)> done) override {
    auto shared_done = std::make_shared<std::function<void(bool)>>(std::move(done));
    const bool posted = Post([bytes = std::move(bytes), shared_done](Connection& c) mutable {
      c.StreamWrite(std::move(bytes), std::move(*shared_done));
    });
    if (!posted && *shared_done) (*shared_done)(false);
  }
  void End() override {
    Post([](Connection& c) { c.StreamEnd(); });
  }
  void Abort() override {
    Post([](Connection& c) { c.StreamAbort(); });
  }
  void SetOnClose(std::function<void()> on_close) override {
    Post([on_close = std::move(on_close)](Connection& c) mutable {
      if (c.stream_state_ == StreamState::kDone) {
        if (on_close) on_close();  // already gone: tell at once
        return;
      }
      c.on_close_ = std::move(on_close);
    });
  }

 private:
  template <typename F>
  bool Post(F&& f) {
    return strand_.Post(std::forward<F>(f));
  }

  StrandHandle<Connection> strand_;
};

void Connection::StartStream(const StreamHandler& handler, Request request, unsigned version) {
  stream_state_ = StreamState::kWaiting;
  stream_version_ = version;
  auto stream = std::make_shared<Stream>(shared_from_this());
  WatchForClose();
  try {
    handler(std::move(request), stream);
  } catch (const std::exception& e) {
    spdlog::error("http: a streaming handler threw: {}", e.what());
    stream->Fail(Response::Error(500, "INTERNAL", "the handler failed"));
  }
}

}  // namespace

absl::Status HttpServerOptions::Validate() const {
  if (auto hp = SplitHostPort(listen); !hp.ok()) return hp.status();
  if (threads < 1 || threads > 256) return Bad("threads", "must be in [1, 256]");
  if (max_connections < 1 || max_connections > 1'000'000) {
    return Bad("max_connections", "must be in [1, 1000000]");
  }
  if (max_header_bytes < 1024 || max_header_bytes > (1u << 20)) {
    return Bad("max_header_bytes", "must be in [1 KiB, 1 MiB]");
  }
  if (max_body_bytes > (size_t{1} << 30)) return Bad("max_body_bytes", "must be <= 1 GiB");
  if (websocket_read_ahead < 1 || websocket_read_ahead > 1024) {
    return Bad("websocket_read_ahead", "must be in [1, 1024]");
  }
  for (const std::string& origin : cors_allowed_origins) {
    if (origin != "*" &&
        (origin.find("://") == std::string::npos || origin.ends_with('/') ||
         !IsSettableHeader("x", origin) || origin.find(' ') != std::string::npos)) {
      return Bad(
          "cors_allowed_origins",
          fmt::format("'{}' is not an origin (scheme://host[:port], no path) or '*'", origin));
    }
  }
  for (const auto& [field, value] :
       {std::pair{"request_timeout", request_timeout}, std::pair{"idle_timeout", idle_timeout},
        std::pair{"write_timeout", write_timeout}}) {
    if (value.count() <= 0 || value > std::chrono::hours(24)) {
      return Bad(field, "must be in (0, 24 h]");
    }
  }
  return absl::OkStatus();
}

class HttpServer::Impl {
 public:
  Impl(const HttpServerOptions& options, std::shared_ptr<const Router> router)
      : ioc_(std::make_unique<net::io_context>(options.threads)),
        acceptor_(std::in_place, *ioc_),
        retry_timer_(std::in_place, *ioc_) {
    shared_.options = options;
    shared_.router = std::move(router);
    const Response busy = Response::Error(503, "UNAVAILABLE", "too many connections");
    busy_response_ = fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nServer: longsana-serve\r\nContent-Type: {}\r\n"
        "Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}",
        busy.content_type, busy.body.size(), busy.body);
  }

  ~Impl() { Stop(); }

  absl::Status Listen() {
    const std::string& listen = shared_.options.listen;
    absl::StatusOr<HostPort> hp = SplitHostPort(listen);
    if (!hp.ok()) return hp.status();
    beast::error_code ec;
    tcp::endpoint endpoint;
    if (const net::ip::address address = net::ip::make_address(hp->host, ec); !ec) {
      endpoint = tcp::endpoint(address, hp->port);
    } else {
      tcp::resolver resolver(*ioc_);
      const auto results =
          resolver.resolve(hp->host, std::to_string(hp->port),
                           tcp::resolver::passive | tcp::resolver::numeric_service, ec);
      if (ec || results.empty()) {
        return absl::UnavailableError(
            fmt::format("http: cannot resolve '{}': {}", listen, ec ? ec.message() : "no address"));
      }
      endpoint = results.begin()->endpoint();
    }
    const auto fail = [&](std::string_view step) {
      return absl::UnavailableError(
          fmt::format("http: cannot listen on '{}' ({}): {}", listen, step, ec.message()));
    };
    if (acceptor_->open(endpoint.protocol(), ec); ec) return fail("open");
    if (acceptor_->set_option(net::socket_base::reuse_address(true), ec); ec) return fail("option");
    if (acceptor_->bind(endpoint, ec); ec) return fail("bind");
    if (acceptor_->listen(net::socket_base::max_listen_connections, ec); ec) return fail("listen");
    const tcp::endpoint local = acceptor_->local_endpoint(ec);
    if (ec) return fail("local address");
    port_ = local.port();
    address_ = FormatEndpoint(local);
    return absl::OkStatus();
  }

  void Run() {
    Accept();
    threads_.reserve(shared_.options.threads);
    for (int i = 0; i < shared_.options.threads; ++i) {
      threads_.emplace_back([this] {
        // Handlers do not throw (the router catches); this keeps a stray exception from
        // terminating the process.
        while (true) {
          try {
            ioc_->run();
            return;
          } catch (const std::exception& e) {
            spdlog::error("http: io thread caught: {}", e.what());
          }
        }
      });
    }
    spdlog::info("http: listening on {} ({} io threads)", address_, shared_.options.threads);
  }

  void Stop() {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (!ioc_) return;
    work_.reset();
    ioc_->stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    // Destroying the io_context destroys the pending handlers, which own the connections: this
    // closes every socket, idle or mid-response, without running anything more. The I/O objects
    // the server owns go first, while their io_context still exists.
    acceptor_.reset();
    retry_timer_.reset();
    ioc_.reset();
  }

  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  void Accept() {
    acceptor_->async_accept(
        net::make_strand(*ioc_),
        [this](beast::error_code ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
  }

  void OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors, mostly: back off instead of spinning on the error.
      spdlog::debug("http: accept failed: {}", ec.message());
      retry_timer_->expires_after(kAcceptRetry);
      retry_timer_->async_wait([this](beast::error_code ec) {
        if (!ec) Accept();
      });
      return;
    }
    if (shared_.connections.load(std::memory_order_relaxed) >= shared_.options.max_connections) {
      Refuse(socket);
    } else {
      beast::error_code peer_ec;
      const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
      if (!peer_ec) {
        std::make_shared<Connection>(std::move(socket), shared_, FormatEndpoint(peer))->Start();
      }
    }
    Accept();
  }

  // Over max_connections: one non-blocking write of a fixed 503 into the fresh socket's empty
  // send buffer, then close; no connection object, no buffer.
  void Refuse(tcp::socket& socket) {
    beast::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(net::buffer(busy_response_), ignored);
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    spdlog::debug("http: refused a connection over max_connections ({})",
                  shared_.options.max_connections);
  }

  Shared shared_;
  std::unique_ptr<net::io_context> ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<net::steady_timer> retry_timer_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_{
      std::in_place, ioc_->get_executor()};
  std::vector<std::thread> threads_;
  std::mutex stop_mu_;
  std::string busy_response_;
  int port_ = 0;
  std::string address_;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, std::shared_ptr<const Router> router) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (router == nullptr) return absl::InvalidArgumentError("http: no router");
  auto impl = std::make_unique<Impl>(options, std::move(router));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  impl->Run();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Stop(); }
int HttpServer::port() const { return impl_->port(); }
std::string HttpServer::address() const { return impl_->address(); }
void HttpServer::Stop() { impl_->Stop(); }

}  // namespace longsana::server::http
