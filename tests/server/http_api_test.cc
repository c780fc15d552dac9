// The browser API on the HTTP port (server/service.h, HttpGenerate; server/http streaming):
// GET /v1/generate streams a playable MP4 with the same validation, tokens, quotas and
// metrics as gRPC; refusals are JSON with the gRPC code's HTTP status; a client that goes
// away cancels its session and frees the slot.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "server/server.h"
#include "tests/common/temp_dir.h"
#include "tests/server/fake_engine.h"
#include "tests/server/server_test_util.h"

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;
using server::Server;
using server::ServerOptions;
using ::testing::HasSubstr;

constexpr const char* kToken = "http-token-0123456789abcdef";

class HttpApiTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, FakeEngineOptions engine_options = {}) {
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    http_ = server_->http_address();
    engine_ = std::make_shared<FakeEngine>(engine_options);
    server_->SetEngine(engine_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(2s);
  }
  // A tokens file with one tenant, acme (kToken): one session at a time, none queued.
  std::string OneSessionTenantFile() {
    WriteFile(dir_.File("tokens.yaml"), fmt::format(R"(tenants:
  - name: acme
    token: {}
    max_sessions: 1
    max_queued: 0
)",
                                                    kToken));
    return dir_.File("tokens.yaml");
  }
  std::string Metrics() {
    auto reply = HttpGet(http_, "/metrics");
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->body : "";
  }
  // The JSON error's message of a refused GET, with its HTTP status.
  std::pair<int, std::string> Refusal(const std::string& path, const std::string& headers = "") {
    auto reply = HttpGet(http_, path, 10s, headers);
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (!reply.ok()) return {0, ""};
    EXPECT_EQ(reply->Header("content-type").value_or(""), "application/json") << reply->body;
    return {reply->status, reply->body};
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<FakeEngine> engine_;
  std::string http_;
};

TEST_F(HttpApiTest, GenerateStreamsAPlayableMp4) {
  StartServer();
  auto reply =
      HttpGet(http_, "/v1/generate?prompt=a+red+kite+over+green+hills&width=64&height=64&frames=81",
              30s, "x-request-id: http-test-1\r\n");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_TRUE(reply->chunked);
  EXPECT_EQ(reply->Header("content-type").value_or(""), "video/mp4");
  EXPECT_EQ(reply->Header("cache-control").value_or(""), "no-store");
  EXPECT_EQ(reply->Header("x-request-id").value_or(""), "http-test-1");
  EXPECT_FALSE(reply->Header("x-session-id").value_or("").empty());
  WriteFile(dir_.File("http.mp4"), reply->body);
  auto probe = FfprobeVideo(dir_.File("http.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, 81);
  EXPECT_EQ(probe->width, 64);
  EXPECT_EQ(probe->codec, "h264");
  const std::string metrics = Metrics();
  EXPECT_EQ(
      ScrapeSample(metrics, "longsana_sessions_ended_total{code=\"OK\",tenant=\"anonymous\"}"), 1);
  EXPECT_GT(ScrapeSample(metrics, "longsana_chunk_bytes_sent_total"), 1000);
}

TEST_F(HttpApiTest, BadQueryValuesAreRefusedNamingTheFieldAsGrpcDoes) {
  StartServer();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/generate?prompt=x&width=abc", "width: 'abc' is not an integer"},
      {"/v1/generate?prompt=x&width=7", "width: 7 is not a multiple of 16"},
      {"/v1/generate?width=64", "prompt:"},
      {"/v1/generate?prompt=x&colour=red", "colour: unknown parameter"},
      {"/v1/generate?prompt=x&seed=1&seed=2", "seed: given twice"},
      {"/v1/generate?prompt=x&frames=81&live=true", "num_frames: give one of"},
      {"/v1/generate?prompt=x&pacing=slow", "pacing: 'slow' is not realtime or fast"},
      {"/v1/generate?prompt=x&lookahead_seconds=nan", "lookahead_seconds:"},
      {"/v1/generate?prompt=x&fragments=gop", "fragments: 'gop'"},
      {"/v1/generate?prompt=x&frames=80", "num_frames:"},
  };
  for (const auto& [path, message] : cases) {
    const auto [status, body] = Refusal(path);
    EXPECT_EQ(status, 400) << path << ": " << body;
    EXPECT_THAT(body, HasSubstr("\"status\":\"INVALID_ARGUMENT\"")) << path;
    EXPECT_THAT(body, HasSubstr(message)) << path;
  }
  EXPECT_EQ(
      ScrapeSample(Metrics(), "longsana_rejections_total{reason=\"invalid\",tenant=\"anonymous\"}"),
      static_cast<double>(cases.size()));
  // Other methods on the route: 405.
  auto head = HttpGet(http_, "/nope");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->status, 404);
}

TEST_F(HttpApiTest, TokensAndQuotasApplyAsOnGrpc) {
  ServerOptions options;
  options.auth_tokens_file = OneSessionTenantFile();
  FakeEngineOptions slow;
  slow.step_time = 20ms;
  StartServer(options, slow);
  auto [status, body] = Refusal("/v1/generate?prompt=x&width=64&height=64");
  EXPECT_EQ(status, 401) << body;
  EXPECT_THAT(body, HasSubstr("UNAUTHENTICATED"));
  std::tie(status, body) =
      Refusal("/v1/generate?prompt=x&width=64&height=64", "authorization: Bearer wrong\r\n");
  EXPECT_EQ(status, 401) << body;

  // One session at a time for acme: while one streams, a second is 429 with Retry-After.
  auto first = std::async(std::launch::async, [&] {
    return HttpGet(http_, "/v1/generate?prompt=a+long+one&width=64&height=64&frames=961", 60s,
                   fmt::format("authorization: Bearer {}\r\n", kToken));
  });
  for (int i = 0; i < 500 && engine_->Stats().running == 0; ++i) std::this_thread::sleep_for(10ms);
  auto second = HttpGet(http_, "/v1/generate?prompt=another&width=64&height=64", 10s,
                        fmt::format("authorization: Bearer {}\r\n", kToken));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->status, 429) << second->body;
  EXPECT_THAT(second->body, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_TRUE(second->Header("retry-after").has_value());
  auto done = first.get();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->status, 200);
}

// A WebSocket /v1/session client: sends `commands` (JSON text) and collects the text
// events until the server closes; chunk bytes are counted, not kept.
struct WsRun {
  std::vector<nlohmann::json> events;
  int binaries = 0;
  int close_code = 0;
  nlohmann::json end;
};

WsRun RunWebSocket(const std::string& http, const std::string& target,
                   const std::vector<std::string>& commands,
                   const std::string& authorization = "") {
  namespace beast = boost::beast;
  namespace websocket = boost::beast::websocket;
  boost::asio::io_context ioc;
  websocket::stream<boost::asio::ip::tcp::socket> ws(ioc);
  boost::asio::ip::tcp::resolver resolver(ioc);
  const size_t colon = http.rfind(':');
  boost::asio::connect(ws.next_layer(),
                       resolver.resolve(http.substr(0, colon), http.substr(colon + 1)));
  ws.set_option(websocket::stream_base::decorator([authorization](websocket::request_type& r) {
    if (!authorization.empty()) r.set(boost::beast::http::field::authorization, authorization);
  }));
  ws.handshake(http, target);
  for (const std::string& command : commands) ws.write(boost::asio::buffer(command));
  WsRun run;
  while (true) {
    beast::flat_buffer buffer;
    beast::error_code ec;
    ws.read(buffer, ec);
    if (ec) {
      run.close_code = ws.reason().code;
      break;
    }
    if (ws.got_binary()) {
      ++run.binaries;
      continue;
    }
    run.events.push_back(nlohmann::json::parse(beast::buffers_to_string(buffer.data())));
    if (run.events.back().contains("end")) run.end = run.events.back()["end"];
  }
  return run;
}

// The WebSocket session is admitted like gRPC's Session (one AdmitSession): tokens from the header
// or ?access_token=, the tenant's quota, the same field-named validation, and the metrics.
TEST_F(HttpApiTest, WebSocketSessionsNeedTokensAreValidatedAndCountedLikeGrpc) {
  ServerOptions options;
  options.auth_tokens_file = OneSessionTenantFile();
  StartServer(options);
  const std::string start =
      R"({"commandId":"1","start":{"prompt":"a kite","width":64,"height":64,"numFrames":81}})";
  WsRun refused = RunWebSocket(http_, "/v1/session", {start});
  EXPECT_EQ(refused.end["status"], "UNAUTHENTICATED") << refused.end.dump();
  EXPECT_EQ(refused.close_code, 4016);
  EXPECT_TRUE(refused.events.size() == 1u) << "nothing but the end";

  WsRun ok = RunWebSocket(http_, fmt::format("/v1/session?access_token={}", kToken), {start});
  ASSERT_FALSE(ok.events.empty());
  EXPECT_TRUE(ok.events.front().contains("accepted")) << ok.events.front().dump();
  EXPECT_EQ(ok.end["status"], "OK") << ok.end.dump();
  EXPECT_EQ(ok.close_code, 1000);
  int chunks = 0;
  for (const auto& e : ok.events) chunks += e.contains("chunk") ? 1 : 0;
  EXPECT_EQ(chunks, ok.binaries) << "each chunk event is followed by its bytes";
  EXPECT_GE(ok.binaries, 2);

  WsRun bad =
      RunWebSocket(http_, "/v1/session", {R"({"commandId":"1","start":{"prompt":"x","width":7}})"},
                   fmt::format("Bearer {}", kToken));
  EXPECT_EQ(bad.end["status"], "INVALID_ARGUMENT");
  EXPECT_THAT(bad.end["message"].get<std::string>(), HasSubstr("start.width"));
  EXPECT_EQ(bad.close_code, 4003);

  WsRun unknown = RunWebSocket(http_, "/v1/session?prompt=x", {start});
  EXPECT_THAT(unknown.end["message"].get<std::string>(), HasSubstr("'prompt'"));

  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr(R"(longsana_rejections_total{reason="unauthenticated")"));
  EXPECT_THAT(metrics, HasSubstr(R"(longsana_sessions_ended_total{code="OK",tenant="acme"} 1)"));
}

TEST_F(HttpApiTest, WatchGivesAnotherViewerAPlayableMp4FromTheLatestKeyframe) {
  FakeEngineOptions slow;
  slow.step_time = 15ms;
  StartServer({}, slow);
  auto [status, body] = Refusal("/v1/sessions/abc/watch");
  EXPECT_EQ(status, 400) << body;
  EXPECT_THAT(body, HasSubstr("session_id"));
  std::tie(status, body) = Refusal("/v1/sessions/123456789/watch");
  EXPECT_EQ(status, 404) << body;

  // The first session of a fresh fake engine is session 1 (checked on the owner's reply).
  auto owner = std::async(std::launch::async, [&] {
    return HttpGet(http_, "/v1/generate?prompt=a+long+one&width=64&height=64&frames=481", 60s);
  });
  for (int i = 0; i < 500 && engine_->Stats().running == 0; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(300ms);  // a few blocks in
  auto viewer = HttpGet(http_, "/v1/sessions/1/watch", 60s);
  auto owned = owner.get();
  ASSERT_TRUE(owned.ok()) << owned.status();
  ASSERT_EQ(owned->Header("x-session-id").value_or(""), "1");
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  EXPECT_EQ(viewer->status, 200) << viewer->body;
  EXPECT_EQ(viewer->Header("content-type").value_or(""), "video/mp4");
  WriteFile(dir_.File("owner.mp4"), owned->body);
  WriteFile(dir_.File("viewer.mp4"), viewer->body);
  auto all = FfprobeVideo(dir_.File("owner.mp4"));
  auto seen = FfprobeVideo(dir_.File("viewer.mp4"));
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(all->frames, 481);
  EXPECT_GT(seen->frames, 0);
  EXPECT_LE(seen->frames, all->frames);
  EXPECT_EQ(seen->codec, "h264");
  // After the session: nothing to watch.
  std::tie(status, body) = Refusal("/v1/sessions/1/watch");
  EXPECT_EQ(status, 404) << body;
}

// Opens a GET, reads `bytes` of the response, then closes the socket.
void ReadSomeAndHangUp(const std::string& host_port, const std::string& path, size_t bytes) {
  const size_t colon = host_port.rfind(':');
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path);
  ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  size_t got = 0;
  char buf[4096];
  while (got < bytes) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
}

TEST_F(HttpApiTest, AClientThatHangsUpHasItsSessionCancelledAndItsSlotFreed) {
  FakeEngineOptions slow;
  slow.step_time = 20ms;
  StartServer({}, slow);
  ReadSomeAndHangUp(http_, "/v1/generate?prompt=a+long+one&width=64&height=64&frames=961", 2000);
  for (int i = 0; i < 500 && engine_->Stats().running > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(engine_->Stats().running, 0);
  const std::string metrics = Metrics();
  EXPECT_EQ(ScrapeSample(metrics,
                         "longsana_sessions_ended_total{code=\"CANCELLED\",tenant=\"anonymous\"}"),
            1)
      << metrics;
  // The server goes on: a normal request right after.
  auto reply = HttpGet(http_, "/v1/generate?prompt=next&width=64&height=64&frames=41", 30s);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
}

}  // namespace
}  // namespace longsana::testing
