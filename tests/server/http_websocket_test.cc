// server/http: WebSocket routes (upgrade, pulled reads, text and binary, closes both ways, the
// origin rule, message size) and CORS (headers for allowed origins, preflights), on a real
// listener driven by Boost.Beast's client.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/http/http_router.h"
#include "server/http/http_server.h"

namespace longsana::server::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// What a test route saw.
struct Seen {
  std::mutex mu;
  std::vector<std::string> messages;
  std::promise<void> closed;
  std::shared_ptr<WebSocket> socket;
};

class WebSocketTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions options = {}) {
    auto router = std::make_shared<Router>();
    // Echo: every message back as it came (text or binary), "close:N" closes with code N,
    // "hold" stops reading.
    router->HandleWebSocket("/echo", [this](Request request, std::shared_ptr<WebSocket> ws) {
      seen_.socket = ws;
      ws->Start({.on_message =
                     [this, ws](std::string message, bool binary) {
                       {
                         std::lock_guard lock(seen_.mu);
                         seen_.messages.push_back(message);
                       }
                       if (message.starts_with("close:")) {
                         ws->Close(static_cast<uint16_t>(std::stoi(message.substr(6))), "bye");
                         return;
                       }
                       if (message == "hold") return;
                       ws->Send(message, binary, nullptr);
                       ws->Read();
                     },
                 .on_close = [this] { seen_.closed.set_value(); }});
      ws->Send("hello " + request.peer.substr(0, 9), false, nullptr);
      ws->Read();
    });
    router->Handle("GET", "/plain", [](const Request&) { return Response::Text(200, "plain"); });
    options.listen = "127.0.0.1:0";
    auto server = HttpServer::Start(options, router);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    port_ = std::to_string(server_->port());
  }

  // A connected client; `origin` empty sends none.
  std::unique_ptr<websocket::stream<tcp::socket>> Connect(const std::string& origin = "",
                                                          beast::error_code* error = nullptr) {
    auto ws = std::make_unique<websocket::stream<tcp::socket>>(ioc_);
    tcp::resolver resolver(ioc_);
    net::connect(ws->next_layer(), resolver.resolve("127.0.0.1", port_));
    ws->set_option(websocket::stream_base::decorator([origin](websocket::request_type& r) {
      if (!origin.empty()) r.set(bhttp::field::origin, origin);
    }));
    beast::error_code ec;
    ws->handshake("127.0.0.1:" + port_, "/echo", ec);
    if (error != nullptr) *error = ec;
    if (ec) return nullptr;
    return ws;
  }

  static std::string ReadText(websocket::stream<tcp::socket>& ws, bool* binary = nullptr) {
    beast::flat_buffer buffer;
    ws.read(buffer);
    if (binary != nullptr) *binary = ws.got_binary();
    return beast::buffers_to_string(buffer.data());
  }

  bhttp::response<bhttp::string_body> Plain(
      bhttp::verb verb, const std::string& target,
      std::vector<std::pair<std::string, std::string>> headers) {
    tcp::socket socket(ioc_);
    tcp::resolver resolver(ioc_);
    net::connect(socket, resolver.resolve("127.0.0.1", port_));
    bhttp::request<bhttp::string_body> request(verb, target, 11);
    request.set(bhttp::field::host, "127.0.0.1:" + port_);
    for (const auto& [name, value] : headers) request.set(name, value);
    bhttp::write(socket, request);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    bhttp::read(socket, buffer, response);
    return response;
  }

  size_t MessagesSeen() {
    std::lock_guard lock(seen_.mu);
    return seen_.messages.size();
  }

  net::io_context ioc_;
  Seen seen_;
  std::unique_ptr<HttpServer> server_;
  std::string port_;
};

TEST_F(WebSocketTest, EchoesTextAndBinaryInOrder) {
  Start();
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(ReadText(*ws), "hello 127.0.0.1");
  ws->text(true);
  ws->write(net::buffer(std::string("one")));
  ws->binary(true);
  const std::string bytes("\x00\x01\xff", 3);
  ws->write(net::buffer(bytes));
  bool binary = true;
  EXPECT_EQ(ReadText(*ws, &binary), "one");
  EXPECT_FALSE(binary);
  EXPECT_EQ(ReadText(*ws, &binary), bytes);
  EXPECT_TRUE(binary);
  ws->close(websocket::close_code::normal);
  EXPECT_EQ(seen_.closed.get_future().wait_for(5s), std::future_status::ready)
      << "the peer's close reaches on_close";
}

TEST_F(WebSocketTest, MessagesWaitForTheHandlersRead) {
  Start();
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  ws->write(net::buffer(std::string("hold")));
  // More than the read-ahead (4): the connection stops reading but stays open.
  const std::vector<std::string> more = {"two", "three", "four", "five", "six", "seven"};
  for (const std::string& m : more) ws->write(net::buffer(m));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(MessagesSeen(), 1u) << "only one Read was asked for";
  seen_.socket->Read();  // the handler asks again: each one is echoed, in order
  for (const std::string& m : more) EXPECT_EQ(ReadText(*ws), m);
  EXPECT_EQ(MessagesSeen(), 1u + more.size());
}

TEST_F(WebSocketTest, AHandlerThatNeverTakesItsMessagesIsClosedAfterTheIdleTimeout) {
  HttpServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(400);
  Start(options);
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  ws->write(net::buffer(std::string("hold")));
  for (int i = 0; i < 6; ++i) ws->write(net::buffer(std::string("x")));
  beast::flat_buffer buffer;
  beast::error_code ec;
  ws->read(buffer, ec);  // nothing is echoed; the server gives up on the handler
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(ws->reason().code, websocket::close_code::policy_error);
}

// A read that starts while a write is in flight must not inherit the write's deadline: the
// client here is silent for longer than write_timeout after a slow write and its connection
// stays up. (CI once lost a WebSocket session this way, exactly write_timeout after an ack was
// written: the tcp_stream's expiry had become the pending read's deadline.)
TEST_F(WebSocketTest, ASilentClientOutlivesTheWriteTimeoutOfAnEarlierWrite) {
  HttpServerOptions options;
  options.write_timeout = std::chrono::milliseconds(600);
  Start(options);
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  // Fill the read-ahead so that no read is in flight, then start a write the client does not
  // read yet (larger than the socket buffers), then let the server read again during it.
  ws->write(net::buffer(std::string("hold")));
  for (int i = 0; i < 4; ++i) ws->write(net::buffer(std::string("x")));
  std::this_thread::sleep_for(100ms);
  const std::string big(32 << 20, 'b');
  seen_.socket->Send(big, true, nullptr);
  std::this_thread::sleep_for(100ms);
  seen_.socket->Read();  // the echoes of the "x"s queue behind the big write
  std::this_thread::sleep_for(100ms);
  ws->read_message_max(64 << 20);
  EXPECT_EQ(ReadText(*ws).size(), big.size());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ReadText(*ws), "x");
  std::this_thread::sleep_for(3 * options.write_timeout);  // silent, reading nothing
  ws->write(net::buffer(std::string("still here")));
  beast::flat_buffer buffer;
  beast::error_code ec;
  ws->read(buffer, ec);
  ASSERT_FALSE(ec) << "the connection was dropped: " << ec.message();
  EXPECT_EQ(beast::buffers_to_string(buffer.data()), "still here");
}

TEST_F(WebSocketTest, TheServersCloseCarriesItsCodeAfterTheQueuedMessages) {
  Start();
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  ws->write(net::buffer(std::string("close:4003")));
  beast::flat_buffer buffer;
  beast::error_code ec;
  ws->read(buffer, ec);
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(ws->reason().code, 4003);
  EXPECT_EQ(std::string(ws->reason().reason.c_str()), "bye");
}

TEST_F(WebSocketTest, AClientThatVanishesReachesOnClose) {
  Start();
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  ws->next_layer().close();  // no close frame
  EXPECT_EQ(seen_.closed.get_future().wait_for(5s), std::future_status::ready);
}

TEST_F(WebSocketTest, AMessageOverTheBodyLimitEndsTheConnection) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  Start(options);
  auto ws = Connect();
  ASSERT_NE(ws, nullptr);
  ReadText(*ws);
  ws->write(net::buffer(std::string(4096, 'x')));
  beast::flat_buffer buffer;
  beast::error_code ec;
  ws->read(buffer, ec);
  // The server sends 1009 and drops the connection; with the oversized message still unread
  // there, the kernel may turn that into a reset that overtakes the close frame.
  ASSERT_TRUE(ec) << "the connection must end";
  if (ec == websocket::error::closed) {
    EXPECT_EQ(ws->reason().code, websocket::close_code::too_big);
  }
  EXPECT_EQ(seen_.closed.get_future().wait_for(5s), std::future_status::ready);
}

TEST_F(WebSocketTest, OriginsOtherThanTheHostOrTheAllowedOnesAreRefused) {
  HttpServerOptions options;
  options.cors_allowed_origins = {"https://app.example.com"};
  Start(options);
  EXPECT_NE(Connect(), nullptr) << "no Origin: not a browser";
  EXPECT_NE(Connect("http://127.0.0.1:" + port_), nullptr) << "same origin";
  EXPECT_NE(Connect("https://app.example.com"), nullptr) << "allowed";
  beast::error_code ec;
  EXPECT_EQ(Connect("https://evil.example", &ec), nullptr);
  EXPECT_EQ(ec, websocket::error::upgrade_declined);
}

TEST_F(WebSocketTest, APlainGetOfAWebSocketRouteIs426) {
  Start();
  const auto response = Plain(bhttp::verb::get, "/echo", {});
  EXPECT_EQ(response.result_int(), 426);
  EXPECT_EQ(response[bhttp::field::upgrade], "websocket");
  EXPECT_THAT(response.body(), HasSubstr("WebSocket"));
}

TEST_F(WebSocketTest, CorsHeadersOnlyForAllowedOriginsAndPreflightsAreAnswered) {
  HttpServerOptions options;
  options.cors_allowed_origins = {"https://app.example.com"};
  Start(options);
  auto allowed = Plain(bhttp::verb::get, "/plain", {{"Origin", "https://app.example.com"}});
  EXPECT_EQ(allowed.result_int(), 200);
  EXPECT_EQ(allowed["Access-Control-Allow-Origin"], "https://app.example.com");
  EXPECT_EQ(allowed["Vary"], "Origin");
  EXPECT_THAT(std::string(allowed["Access-Control-Expose-Headers"]), HasSubstr("X-Session-Id"));
  auto other = Plain(bhttp::verb::get, "/plain", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(other.result_int(), 200);
  EXPECT_EQ(other.count("Access-Control-Allow-Origin"), 0u);
  auto preflight = Plain(bhttp::verb::options, "/plain",
                         {{"Origin", "https://app.example.com"},
                          {"Access-Control-Request-Method", "GET"},
                          {"Access-Control-Request-Headers", "authorization"}});
  EXPECT_EQ(preflight.result_int(), 204);
  EXPECT_EQ(preflight["Access-Control-Allow-Origin"], "https://app.example.com");
  EXPECT_THAT(std::string(preflight["Access-Control-Allow-Headers"]), HasSubstr("authorization"));
  EXPECT_THAT(std::string(preflight["Access-Control-Allow-Methods"]), HasSubstr("GET"));
}

TEST(HttpServerOptionsTest, BadOriginsAreRefusedNamingTheField) {
  HttpServerOptions options;
  options.cors_allowed_origins = {"app.example.com"};
  EXPECT_THAT(std::string(options.Validate().message()), HasSubstr("cors_allowed_origins"));
  options.cors_allowed_origins = {"https://app.example.com/"};
  EXPECT_FALSE(options.Validate().ok());
  options.cors_allowed_origins = {"*", "http://localhost:3000"};
  EXPECT_TRUE(options.Validate().ok());
}

}  // namespace
}  // namespace longsana::server::http
