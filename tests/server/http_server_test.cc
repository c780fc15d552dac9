// server/http: the router as a table, and a real listener on loopback driven by raw POSIX
// sockets (so that the tests can misbehave in ways an HTTP client library would not).
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "server/http/http_router.h"

namespace longsana::server::http {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Generous bound for "it did not hang"; nothing here measures speed.
constexpr milliseconds kPatience{5000};

Request Get(std::string_view target, std::string method = "GET") {
  Request request;
  request.method = std::move(method);
  EXPECT_TRUE(ParseTarget(target, request).ok()) << target;
  return request;
}

Handler Reply(std::string body) {
  return [body](const Request&) { return Response::Text(200, body); };
}

// ---------------------------------------------------------------------------------------------
// Router and request helpers.

TEST(HttpRouterTest, ExactRoute) {
  Router router;
  router.Handle("GET", "/metrics", Reply("m"));
  router.Handle("GET", "/", Reply("root"));
  Request request = Get("/metrics");
  const Response response = router.Dispatch(request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "m");
  Request root = Get("/");
  EXPECT_EQ(router.Dispatch(root).body, "root");
  Request trailing = Get("/metrics/");
  EXPECT_EQ(router.Dispatch(trailing).status, 404);
}

TEST(HttpRouterTest, PathParametersAreDecodedSegments) {
  Router router;
  router.Handle("GET", "/v1/sessions/{id}/watch",
                [](const Request& r) { return Response::Text(200, r.path_params.at("id")); });
  Request request = Get("/v1/sessions/ab%20c/watch");
  EXPECT_EQ(router.Dispatch(request).body, "ab c");
  EXPECT_EQ(request.path_params.at("id"), "ab c");
  Request empty = Get("/v1/sessions//watch");
  EXPECT_EQ(router.Dispatch(empty).status, 404);
  Request longer = Get("/v1/sessions/x/watch/more");
  EXPECT_EQ(router.Dispatch(longer).status, 404);
}

TEST(HttpRouterTest, ExactSegmentsWinAndFallBackToParameters) {
  Router router;
  router.Handle("GET", "/v1/sessions/list", Reply("list"));
  router.Handle("GET", "/v1/sessions/{id}", [](const Request& r) {
    return Response::Text(200, "id=" + r.path_params.at("id"));
  });
  router.Handle("GET", "/v1/sessions/{id}/watch", [](const Request& r) {
    return Response::Text(200, "watch=" + r.path_params.at("id"));
  });
  Request list = Get("/v1/sessions/list");
  EXPECT_EQ(router.Dispatch(list).body, "list");
  Request other = Get("/v1/sessions/s1");
  EXPECT_EQ(router.Dispatch(other).body, "id=s1");
  // The exact branch "list" has no "watch" below it: the parameter branch takes the path.
  Request watch = Get("/v1/sessions/list/watch");
  EXPECT_EQ(router.Dispatch(watch).body, "watch=list");
}

TEST(HttpRouterTest, UnknownPathIsJson404) {
  Router router;
  router.Handle("GET", "/healthz", Reply("ok"));
  Request request = Get("/nope");
  const Response response = router.Dispatch(request);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(response.body,
            R"({"error":{"code":404,"status":"NOT_FOUND","message":"no route for /nope"}})");
}

TEST(HttpRouterTest, OtherMethodIs405WithAllow) {
  Router router;
  router.Handle("GET", "/x", Reply("get"));
  router.Handle("POST", "/x", Reply("post"));
  router.Handle("DELETE", "/{name}", Reply("delete"));
  Request put = Get("/x", "PUT");
  const Response response = router.Dispatch(put);
  EXPECT_EQ(response.status, 405);
  ASSERT_EQ(response.headers.size(), 1u);
  EXPECT_EQ(response.headers[0].first, "Allow");
  EXPECT_EQ(response.headers[0].second, "DELETE, GET, HEAD, POST");
  // The method picks among the routes that fit: DELETE /x goes to the parameter route.
  Request del = Get("/x", "DELETE");
  EXPECT_EQ(router.Dispatch(del).body, "delete");
  Request post = Get("/x", "POST");
  EXPECT_EQ(router.Dispatch(post).body, "post");
}

TEST(HttpRouterTest, HeadRunsGetUnlessItHasItsOwnRoute) {
  Router router;
  router.Handle("GET", "/a", Reply("get a"));
  router.Handle("GET", "/b", Reply("get b"));
  router.Handle("HEAD", "/b", Reply("head b"));
  router.Handle("POST", "/c", Reply("post c"));
  Request a = Get("/a", "HEAD");
  EXPECT_EQ(router.Dispatch(a).body, "get a");  // the server sends the headers only
  Request b = Get("/b", "HEAD");
  EXPECT_EQ(router.Dispatch(b).body, "head b");
  Request c = Get("/c", "HEAD");
  EXPECT_EQ(router.Dispatch(c).status, 405);
}

TEST(HttpRouterTest, ThrowingHandlerIs500) {
  Router router;
  router.Handle("GET", "/std",
                [](const Request&) -> Response { throw std::runtime_error("boom"); });
  router.Handle("GET", "/int", [](const Request&) -> Response { throw 7; });
  for (const char* target : {"/std", "/int"}) {
    Request request = Get(target);
    const Response response = router.Dispatch(request);
    EXPECT_EQ(response.status, 500) << target;
    EXPECT_THAT(response.body, HasSubstr(R"("status":"INTERNAL")"));
    EXPECT_THAT(response.body, ::testing::Not(HasSubstr("boom")));  // internals stay inside
  }
}

TEST(HttpRouterTest, MalformedPatternsAbort) {
  EXPECT_DEATH(Router().Handle("GET", "metrics", Reply("")), "must start with '/'");
  EXPECT_DEATH(Router().Handle("GET", "/a/{}", Reply("")), "parameter segment");
  EXPECT_DEATH(Router().Handle("GET", "/a/{b", Reply("")), "parameter segment");
  EXPECT_DEATH(
      {
        Router router;
        router.Handle("GET", "/a/{b}", Reply(""));
        router.Handle("GET", "/a/{c}/d", Reply(""));
      },
      "another route has");
  EXPECT_DEATH(
      {
        Router router;
        router.Handle("GET", "/a", Reply(""));
        router.Handle("GET", "/a", Reply(""));
      },
      "registered twice");
}

TEST(HttpRequestTest, QueryParamsArePercentDecodedFirstOccurrence) {
  Request request = Get("/v1/generate?prompt=a+red%20fox%21&n=3&flag&prompt=second&bad=%zz&e%3D=1");
  EXPECT_EQ(request.path, "/v1/generate");
  EXPECT_EQ(request.query, "prompt=a+red%20fox%21&n=3&flag&prompt=second&bad=%zz&e%3D=1");
  EXPECT_EQ(request.QueryParam("prompt"), "a red fox!");
  EXPECT_EQ(request.QueryParam("n"), "3");
  EXPECT_EQ(request.QueryParam("flag"), "");
  EXPECT_EQ(request.QueryParam("bad"), "%zz");
  EXPECT_EQ(request.QueryParam("e="), "1");
  EXPECT_EQ(request.QueryParam("missing"), std::nullopt);
}

TEST(HttpRequestTest, HeaderLooksUpLowerCasedNames) {
  Request request;
  request.headers = {{"x-request-id", "r1"}, {"accept", "a"}, {"x-request-id", "r2"}};
  EXPECT_EQ(request.Header("x-request-id"), "r1");
  EXPECT_EQ(request.Header("missing"), std::nullopt);
}

TEST(HttpRequestTest, ParseTargetForms) {
  Request r;
  ASSERT_TRUE(ParseTarget("HTTP://example.com:8080/a%41?x=1", r).ok());
  EXPECT_EQ(r.path, "/aA");
  EXPECT_EQ(r.query, "x=1");
  ASSERT_TRUE(ParseTarget("http://example.com", r).ok());
  EXPECT_EQ(r.path, "/");
  ASSERT_TRUE(ParseTarget("http://example.com?q", r).ok());
  EXPECT_EQ(r.path, "/");
  EXPECT_EQ(r.query, "q");
  for (const char* bad : {"*", "example.com:80", "", "/a%2Fb", "/a%2f", "/a%00", "/a%4", "/a%zz"}) {
    EXPECT_EQ(ParseTarget(bad, r).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(HttpResponseTest, ErrorEscapesTheMessage) {
  const Response response = Response::Error(400, "INVALID_ARGUMENT", "bad \"x\"\n\\ \x01");
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(
      response.body,
      R"({"error":{"code":400,"status":"INVALID_ARGUMENT","message":"bad \"x\"\n\\ \u0001"}})");
}

TEST(HttpServerOptionsTest, ValidateNamesTheField) {
  EXPECT_TRUE(HttpServerOptions().Validate().ok());
  const auto field_of = [](auto mutate) {
    HttpServerOptions options;
    mutate(options);
    const absl::Status s = options.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  EXPECT_THAT(field_of([](auto& o) { o.listen = "8080"; }), HasSubstr("listen"));
  EXPECT_THAT(field_of([](auto& o) { o.listen = "[::1]8080"; }), HasSubstr("listen"));
  EXPECT_THAT(field_of([](auto& o) { o.listen = "h:70000"; }), HasSubstr("listen"));
  EXPECT_THAT(field_of([](auto& o) { o.threads = 0; }), HasSubstr("threads"));
  EXPECT_THAT(field_of([](auto& o) { o.max_connections = 0; }), HasSubstr("max_connections"));
  EXPECT_THAT(field_of([](auto& o) { o.max_header_bytes = 10; }), HasSubstr("max_header_bytes"));
  EXPECT_THAT(field_of([](auto& o) { o.max_body_bytes = size_t{1} << 40; }),
              HasSubstr("max_body_bytes"));
  EXPECT_THAT(field_of([](auto& o) { o.request_timeout = milliseconds(0); }),
              HasSubstr("request_timeout"));
  EXPECT_THAT(field_of([](auto& o) { o.idle_timeout = milliseconds(-1); }),
              HasSubstr("idle_timeout"));
  EXPECT_THAT(field_of([](auto& o) { o.write_timeout = milliseconds(0); }),
              HasSubstr("write_timeout"));
}

// ---------------------------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 test client over a POSIX socket.

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class TestClient {
 public:
  // Connects to 127.0.0.1:port; receive_buffer > 0 shrinks SO_RCVBUF first (a slow reader).
  explicit TestClient(int port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~TestClient() { Close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // False once the peer has closed (EPIPE / ECONNRESET).
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response (no body for HEAD, 1xx, 204, 304); nullopt on close, error or timeout.
  std::optional<RawResponse> Read(bool head = false) {
    const auto deadline = Clock::now() + kPatience;
    size_t end;
    while ((end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    RawResponse response;
    const std::string head_text = pending_.substr(0, end);
    pending_.erase(0, end + 4);
    size_t line_end = head_text.find("\r\n");
    const std::string status_line = head_text.substr(0, line_end);
    if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.")) return std::nullopt;
    response.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head_text.find("\r\n", start);
      const std::string line = head_text.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    const bool bodiless =
        head || response.status < 200 || response.status == 204 || response.status == 304;
    if (!bodiless) {
      const size_t length = std::stoul(response.Header("content-length"));
      while (pending_.size() < length) {
        if (!Fill(deadline)) return std::nullopt;
      }
      response.body = pending_.substr(0, length);
      pending_.erase(0, length);
    }
    return response;
  }

  // True when the server closes the connection (EOF or reset) within `patience`; bytes that
  // arrive meanwhile are counted into received_bytes().
  bool WaitClosed(milliseconds patience = kPatience) {
    const auto deadline = Clock::now() + patience;
    while (Clock::now() < deadline) {
      char buf[65536];
      pollfd p{fd_, POLLIN, 0};
      const int left = static_cast<int>(
          std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
      if (::poll(&p, 1, std::max(left, 0)) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
      if (n > 0) received_bytes_ += static_cast<size_t>(n);
    }
    return false;
  }

  size_t received_bytes() const { return received_bytes_ + pending_.size(); }

  // True when the connection is closed right now (EOF or reset pending; nothing is consumed).
  bool IsClosedNow() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK);
    return n == 0 || (n < 0 && errno != EAGAIN);
  }

 private:
  bool Fill(Clock::time_point deadline) {
    const int left =
        static_cast<int>(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
    pollfd p{fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, left) <= 0) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
  size_t received_bytes_ = 0;
};

// A server on 127.0.0.1:0 with a few routes.
class HttpServerTest : public ::testing::Test {
 protected:
  static constexpr size_t kBigBytes = 8 << 20;

  std::unique_ptr<HttpServer> StartServer(HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    auto router = std::make_shared<Router>();
    router->Handle("GET", "/hello", Reply("hello"));
    router->Handle("GET", "/big",
                   [](const Request&) { return Response::Text(200, std::string(kBigBytes, 'x')); });
    router->Handle("POST", "/echo", [](const Request& r) { return Response::Text(200, r.body); });
    router->Handle("GET", "/throw",
                   [](const Request&) -> Response { throw std::runtime_error("handler bug"); });
    router->Handle("GET", "/v1/items/{id}", [](const Request& r) {
      Response response = Response::Json(200, "{\"id\":\"" + r.path_params.at("id") + "\"}");
      response.headers.emplace_back("X-Peer", r.peer);
      response.headers.emplace_back("X-Evil", "a\r\nSet-Cookie: x");  // dropped by the server
      response.headers.emplace_back("Content-Length", "999");         // owned by the server
      return response;
    });
    auto server = HttpServer::Start(options, std::move(router));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  static std::string GetRequest(std::string_view path, std::string_view extra = "") {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra) + "\r\n";
  }
};

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client.Send(GetRequest("/hello")));
    const auto response = client.Read();
    ASSERT_TRUE(response.has_value()) << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "hello");
    EXPECT_EQ(response->Header("content-length"), "5");
    EXPECT_EQ(response->Header("server"), "longsana-serve");
    EXPECT_EQ(response->Header("content-type"), "text/plain; charset=utf-8");
    EXPECT_EQ(response->Header("connection"), "");
  }
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(GetRequest("/v1/items/a") + GetRequest("/v1/items/b") +
                          GetRequest("/hello", "Connection: close\r\n")));
  const auto a = client.Read();
  const auto b = client.Read();
  const auto c = client.Read();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->body, R"({"id":"a"})");
  EXPECT_EQ(b->body, R"({"id":"b"})");
  EXPECT_EQ(c->body, "hello");
  EXPECT_EQ(c->Header("connection"), "close");
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, HandlerHeadersAreFilteredAndPeerIsSet) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(GetRequest("/v1/items/x%20y")));
  const auto response = client.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"({"id":"x y"})");
  EXPECT_EQ(response->Header("content-type"), "application/json");
  EXPECT_EQ(response->Header("content-length"), "12");
  EXPECT_THAT(response->Header("x-peer"), HasSubstr("127.0.0.1:"));
  EXPECT_EQ(response->Header("x-evil"), "");
  EXPECT_EQ(response->Header("set-cookie"), "");
}

TEST_F(HttpServerTest, Http10ClosesAfterTheResponse) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send("GET /hello HTTP/1.0\r\n\r\n"));
  const auto response = client.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "hello");
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_TRUE(client.WaitClosed());

  TestClient keep(server->port());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(keep.Send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    const auto again = keep.Read();
    ASSERT_TRUE(again.has_value()) << i;
    EXPECT_EQ(again->Header("connection"), "keep-alive");
  }
}

TEST_F(HttpServerTest, HeadSendsHeadersOnly) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + GetRequest("/hello")));
  const auto head = client.Read(/*head=*/true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->Header("content-length"), "5");
  // Had the HEAD response carried a body, this read would start inside it.
  const auto get = client.Read();
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->body, "hello");
}

TEST_F(HttpServerTest, UnknownPathIsJson404AndTheConnectionStays) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(GetRequest("/does/not/exist")));
  const auto response = client.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(response->Header("content-type"), "application/json");
  EXPECT_THAT(response->body, HasSubstr(R"("status":"NOT_FOUND")"));
  ASSERT_TRUE(client.Send("DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
  const auto not_allowed = client.Read();
  ASSERT_TRUE(not_allowed.has_value());
  EXPECT_EQ(not_allowed->status, 405);
  EXPECT_EQ(not_allowed->Header("allow"), "GET, HEAD");
}

TEST_F(HttpServerTest, ThrowingHandlerIs500AndTheConnectionStays) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(GetRequest("/throw") + GetRequest("/hello")));
  const auto failed = client.Read();
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status, 500);
  const auto ok = client.Read();
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, PostBodyAndExpectContinue) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde"));
  const auto plain = client.Read();
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->body, "abcde");

  ASSERT_TRUE(client.Send(
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
  const auto go_on = client.Read();
  ASSERT_TRUE(go_on.has_value());
  EXPECT_EQ(go_on->status, 100);
  ASSERT_TRUE(client.Send("xyz"));
  const auto echoed = client.Read();
  ASSERT_TRUE(echoed.has_value());
  EXPECT_EQ(echoed->body, "xyz");

  ASSERT_TRUE(client.Send(
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
  const auto chunked = client.Read();
  ASSERT_TRUE(chunked.has_value());
  EXPECT_EQ(chunked->body, "abc");
}

TEST_F(HttpServerTest, HugeHeaderIs431AndClose) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  client.Send(GetRequest("/hello", "X-Big: " + std::string(64 * 1024, 'a') + "\r\n"));
  const auto response = client.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 431);
  EXPECT_EQ(response->Header("connection"), "close");
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, OversizeBodyIs413AndClose) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  {
    // Announced by Content-Length: answered before the body is read.
    TestClient client(server->port());
    ASSERT_TRUE(client.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n"));
    const auto response = client.Read();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->Header("connection"), "close");
    EXPECT_TRUE(client.WaitClosed());
  }
  {
    // Chunked: found out while reading the body, which the client keeps sending.
    TestClient client(server->port());
    ASSERT_TRUE(client.Send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
                            std::string("1000\r\n") + std::string(4096, 'b') + "\r\n"));
    const auto response = client.Read();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 413);
    EXPECT_TRUE(client.WaitClosed());
  }
}

TEST_F(HttpServerTest, GarbageIs400AndClose) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  static constexpr char kTlsHello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
  for (const std::string& garbage :
       {std::string(kTlsHello, sizeof(kTlsHello) - 1), std::string("GET /hello HTTP/9.9\r\n\r\n"),
        std::string("GET nope HTTP/1.1\r\n\r\n"),
        std::string("GET /a%2Fb HTTP/1.1\r\nHost: t\r\n\r\n")}) {
    TestClient client(server->port());
    client.Send(garbage);
    const auto response = client.Read();
    ASSERT_TRUE(response.has_value()) << garbage;
    EXPECT_EQ(response->status, 400) << garbage;
    EXPECT_EQ(response->Header("connection"), "close");
    EXPECT_THAT(response->body, HasSubstr(R"("status":"INVALID_ARGUMENT")"));
    EXPECT_TRUE(client.WaitClosed());
  }
}

TEST_F(HttpServerTest, SlowClientIsCutWhileOthersAreServed) {
  HttpServerOptions options;
  options.request_timeout = milliseconds(500);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  TestClient slow(server->port());
  const std::string request = GetRequest("/hello", "X-Pad: " + std::string(200, 'p') + "\r\n");
  const auto start = Clock::now();
  bool closed = false;
  bool served_other = false;
  for (size_t i = 0; i < request.size() && !closed; ++i) {
    if (!slow.Send(request.substr(i, 1)) || slow.IsClosedNow()) {
      closed = true;
      break;
    }
    if (i == 2) {  // mid-trickle, another client is answered
      TestClient other(server->port());
      ASSERT_TRUE(other.Send(GetRequest("/hello")));
      const auto response = other.Read();
      served_other = response.has_value() && response->status == 200;
    }
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_LT(Clock::now() - start, kPatience) << "the slow client was never cut";
  }
  EXPECT_TRUE(closed || slow.WaitClosed());
  EXPECT_TRUE(served_other);
}

TEST_F(HttpServerTest, ClientThatNeverReadsDoesNotBlockOthers) {
  HttpServerOptions options;
  options.threads = 1;  // one io thread: a blocked write would stall everything
  options.write_timeout = milliseconds(500);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  TestClient stuck(server->port(), /*receive_buffer=*/64 * 1024);
  ASSERT_TRUE(stuck.Send(GetRequest("/big")));
  std::this_thread::sleep_for(milliseconds(200));  // the server is now writing into a full pipe

  TestClient other(server->port());
  ASSERT_TRUE(other.Send(GetRequest("/hello")));
  const auto response = other.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "hello");

  // The stalled write makes no progress for write_timeout: the server cuts the connection
  // before the whole 8 MiB is through.
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_TRUE(stuck.WaitClosed());
  EXPECT_LT(stuck.received_bytes(), kBigBytes);
}

TEST_F(HttpServerTest, LargeResponseReachesAReader) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(GetRequest("/big")));
  const auto response = client.Read();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body.size(), kBigBytes);
}

TEST_F(HttpServerTest, ConnectionsOverTheLimitAreRefused) {
  HttpServerOptions options;
  options.max_connections = 4;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<TestClient>> admitted;
  for (int i = 0; i < 4; ++i) {
    admitted.push_back(std::make_unique<TestClient>(server->port()));
    ASSERT_TRUE(admitted.back()->Send(GetRequest("/hello")));
    ASSERT_TRUE(admitted.back()->Read().has_value()) << i;  // accepted and counted
  }
  for (int i = 0; i < 6; ++i) {
    TestClient extra(server->port());
    if (!extra.connected()) continue;  // refused in the backlog: fine too
    extra.Send(GetRequest("/hello"));
    // Either the fixed 503 or a bare close; never a 200.
    const auto response = extra.Read();
    if (response.has_value()) {
      EXPECT_EQ(response->status, 503);
      EXPECT_EQ(response->Header("connection"), "close");
    }
    EXPECT_TRUE(extra.WaitClosed()) << i;
  }
  // The admitted ones still work; once they go, new connections are served again.
  ASSERT_TRUE(admitted[0]->Send(GetRequest("/hello")));
  ASSERT_TRUE(admitted[0]->Read().has_value());
  admitted.clear();
  const auto deadline = Clock::now() + kPatience;
  bool served = false;
  while (!served && Clock::now() < deadline) {
    TestClient again(server->port());
    again.Send(GetRequest("/hello"));
    const auto response = again.Read();
    served = response.has_value() && response->status == 200;
    if (!served) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpServerTest, StopClosesIdleConnectionsPromptly) {
  HttpServerOptions options;
  options.threads = 2;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  TestClient used(server->port());
  ASSERT_TRUE(used.Send(GetRequest("/hello")));
  ASSERT_TRUE(used.Read().has_value());
  TestClient fresh(server->port());
  TestClient partial(server->port());
  ASSERT_TRUE(partial.Send("GET /hel"));
  std::this_thread::sleep_for(milliseconds(100));
  const auto start = Clock::now();
  server->Stop();
  EXPECT_LT(Clock::now() - start, kPatience);
  server->Stop();  // idempotent
  EXPECT_TRUE(used.WaitClosed());
  EXPECT_TRUE(fresh.WaitClosed());
  EXPECT_TRUE(partial.WaitClosed());
  TestClient after(server->port());
  EXPECT_FALSE(after.connected());
}

TEST_F(HttpServerTest, ConcurrentStopIsSafe) {
  HttpServerOptions options;
  options.threads = 4;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&] { server->Stop(); });
  for (auto& t : stoppers) t.join();
  server.reset();
}

TEST(HttpServerStartTest, PortZeroPicksARealPort) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  auto server = HttpServer::Start(options, std::make_shared<Router>());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->address(), "127.0.0.1:" + std::to_string((*server)->port()));
}

TEST(HttpServerStartTest, Ipv6Loopback) {
  HttpServerOptions options;
  options.listen = "[::1]:0";
  auto server = HttpServer::Start(options, std::make_shared<Router>());
  if (!server.ok() && server.status().code() == absl::StatusCode::kUnavailable) {
    GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  }
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->address(), "[::1]:" + std::to_string((*server)->port()));
}

TEST(HttpServerStartTest, BadAddressesFail) {
  const auto start = [](std::string listen) {
    HttpServerOptions options;
    options.listen = std::move(listen);
    return HttpServer::Start(options, std::make_shared<Router>()).status();
  };
  EXPECT_EQ(start("nonsense").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(start("127.0.0.1:65536").code(), absl::StatusCode::kInvalidArgument);
  // TEST-NET-1 is no address of this machine.
  const absl::Status foreign = start("192.0.2.1:0");
  EXPECT_EQ(foreign.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(foreign.message()), HasSubstr("192.0.2.1:0"));
  const absl::Status unresolvable = start("no-such-host.invalid:0");
  EXPECT_EQ(unresolvable.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(unresolvable.message()), HasSubstr("no-such-host.invalid"));

  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  auto first = HttpServer::Start(options, std::make_shared<Router>());
  ASSERT_TRUE(first.ok());
  const std::string taken = (*first)->address();
  const absl::Status in_use = start(taken);
  EXPECT_EQ(in_use.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(in_use.message()), HasSubstr(taken));

  EXPECT_EQ(HttpServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace longsana::server::http
