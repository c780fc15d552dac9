// The operator's side of the server, in process with the FakeEngine: the HTTP port
// (/metrics, /healthz, /readyz), tenant tokens and quotas, request ids, what GetServerInfo
// discloses and counts, and that tokens never reach the log.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <sstream>
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
using ::testing::Not;

constexpr int kServing = 1;
constexpr const char* kAcmeToken = "acme-token-0123456789abcdef";
constexpr const char* kBetaToken = "beta-token-0123456789abcdef";

class ServerOpsTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, FakeEngineOptions engine_options = {},
                   bool with_engine = true) {
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.health_poll_interval = 50ms;
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    http_ = server_->http_address();
    channel_ = MakeChannel(server_->address());
    stub_ = v1::LongSana::NewStub(channel_);
    engine_options_ = engine_options;
    if (with_engine) SetEngine();
  }
  void SetEngine() {
    engine_ = std::make_shared<FakeEngine>(engine_options_);
    server_->SetEngine(engine_);
  }
  void StartWithTokens(FakeEngineOptions engine_options = {}) {
    WriteFile(dir_.File("tokens.yaml"), fmt::format(R"(tenants:
  - name: acme
    token: {}
    max_sessions: 1
    max_priority: 3
  - name: beta
    token: {}
    max_sessions: 4
    max_queued: 1
)",
                                                    kAcmeToken, kBetaToken));
    ServerOptions options;
    options.auth_tokens_file = dir_.File("tokens.yaml");
    StartServer(options, engine_options);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(2s);
  }

  std::string Metrics() {
    auto reply = HttpGet(http_, "/metrics");
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (!reply.ok()) return "";
    EXPECT_EQ(reply->status, 200);
    return reply->body;
  }
  int Probe(const std::string& path) {
    auto reply = HttpGet(http_, path);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->status : -1;
  }

  TempDir dir_;
  FakeEngineOptions engine_options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<FakeEngine> engine_;
  std::string http_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LongSana::Stub> stub_;
};

StreamResult GenerateAs(v1::LongSana::Stub& stub, const v1::GenerateRequest& request,
                        const std::string& token, const std::string& request_id = "",
                        std::multimap<std::string, std::string>* trailers = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 30s);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  if (!request_id.empty()) context.AddMetadata("x-request-id", request_id);
  auto reader = stub.Generate(&context, request);
  StreamResult r;
  v1::GenerateEvent e;
  while (reader->Read(&e)) r.events.push_back(e);
  r.status = reader->Finish();
  if (trailers != nullptr) {
    for (const auto& [k, v] : context.GetServerTrailingMetadata()) {
      trailers->emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// The HTTP port

TEST_F(ServerOpsTest, MetricsCountSessionsChunksRejectionsAndTimings) {
  StartServer();
  int64_t blocks = 0;
  for (int i = 0; i < 2; ++i) {
    const StreamResult r = RunGenerate(*stub_, SmallRequest(81));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    blocks = r.accepted()->num_blocks();
  }
  ASSERT_GE(blocks, 2);
  v1::GenerateRequest bad = SmallRequest(81);
  bad.set_width(63);
  EXPECT_EQ(RunGenerate(*stub_, bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  auto reply = HttpGet(http_, "/metrics");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->status, 200);
  EXPECT_THAT(reply->Header("content-type").value_or(""), HasSubstr("text/plain; version=0.0.4"));
  const std::string& m = reply->body;
  EXPECT_THAT(m, HasSubstr("longsana_sessions_accepted_total{tenant=\"anonymous\"} 2"));
  EXPECT_THAT(m, HasSubstr("longsana_sessions_ended_total{code=\"OK\",tenant=\"anonymous\"} 2"));
  EXPECT_THAT(m, HasSubstr("longsana_rejections_total{reason=\"invalid\",tenant=\"anonymous\"} 1"));
  EXPECT_THAT(m, HasSubstr("longsana_time_to_first_chunk_seconds_count 2"));
  EXPECT_THAT(m, HasSubstr("longsana_queue_wait_seconds_count 2"));
  // Per session: a gap between consecutive blocks, one stage sample per block, the init
  // segment and one chunk per block sent.
  EXPECT_EQ(ScrapeSample(m, "longsana_inter_chunk_gap_seconds_count"), 2 * (blocks - 1));
  EXPECT_EQ(ScrapeSample(m, "longsana_block_stage_seconds_count{stage=\"decode\"}"), 2 * blocks);
  EXPECT_EQ(ScrapeSample(m, "longsana_chunks_sent_total"), 2 * (blocks + 1));
  EXPECT_GT(ScrapeSample(m, "longsana_chunk_bytes_sent_total"), 0);
  EXPECT_THAT(m, HasSubstr("longsana_session_realtime_factor_count 2"));
  EXPECT_THAT(m, HasSubstr("longsana_sessions_running 0"));
  EXPECT_THAT(m, HasSubstr("longsana_sessions_max 2"));
  EXPECT_THAT(m, HasSubstr("longsana_ready 1"));
  EXPECT_THAT(m, HasSubstr("longsana_build_info{version=\""));
  EXPECT_THAT(m, Not(HasSubstr("longsana_device_memory")));  // CPU: not exported

  // The same counts in GetServerInfo: the invalid request is a rejection, not a failure.
  grpc::ClientContext context;
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.capacity().completed(), 2u);
  EXPECT_EQ(info.capacity().rejected(), 1u);
  EXPECT_EQ(info.capacity().failed(), 0u);
}

TEST_F(ServerOpsTest, AProtocolMistakeCountsAsEndedByTheClientNotAsAFailure) {
  StartServer();
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  v1::SessionCommand start;
  *start.mutable_start() = SmallRequest(481);
  ASSERT_TRUE(stream->Write(start));
  v1::GenerateEvent e;
  ASSERT_TRUE(stream->Read(&e));
  ASSERT_TRUE(e.has_accepted());
  ASSERT_TRUE(stream->Write(start));  // a second start: a protocol error
  while (stream->Read(&e)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext info_context;
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(&info_context, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.capacity().failed(), 0u);
  EXPECT_EQ(info.capacity().cancelled(), 1u);
  EXPECT_THAT(Metrics(), HasSubstr("longsana_sessions_ended_total{code=\"INVALID_ARGUMENT\","
                                   "tenant=\"anonymous\"} 1"));
}

TEST_F(ServerOpsTest, ReadyzFollowsLoadingServingAndDrainingWhileHealthzStaysUp) {
  StartServer({}, {}, /*with_engine=*/false);
  EXPECT_EQ(Probe("/readyz"), 503);  // loading
  EXPECT_EQ(Probe("/healthz"), 200);
  SetEngine();
  EXPECT_EQ(Probe("/readyz"), 200);
  EXPECT_EQ(Probe("/healthz"), 200);
  EXPECT_THAT(Metrics(), HasSubstr("longsana_ready 1"));
  server_->Drain(1s);
  auto ready = HttpGet(http_, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("draining"));
  EXPECT_EQ(Probe("/healthz"), 200);
  EXPECT_THAT(Metrics(), HasSubstr("longsana_ready 0"));
  server_->Shutdown(1s);
  EXPECT_EQ(Probe("/healthz"), 200);  // until the process (the Server) goes away
  server_.reset();
  EXPECT_FALSE(HttpGet(http_, "/healthz").ok());
}

TEST_F(ServerOpsTest, UnknownHttpPathsAre404Json) {
  StartServer();
  auto reply = HttpGet(http_, "/nope");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 404);
  EXPECT_THAT(reply->body, HasSubstr("\"NOT_FOUND\""));
}

// ---------------------------------------------------------------------------------------
// Tokens, tenants and quotas

TEST_F(ServerOpsTest, EveryRpcButHealthNeedsAKnownToken) {
  StartWithTokens();
  for (const std::string token : {"", "wrong-token-0123456789abcdef"}) {
    const StreamResult r = GenerateAs(*stub_, SmallRequest(81), token);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
    EXPECT_THAT(r.status.error_message(), Not(HasSubstr("wrong-token")));

    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    v1::ServerInfo info;
    EXPECT_EQ(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);

    grpc::ClientContext session_context;
    if (!token.empty()) session_context.AddMetadata("authorization", "Bearer " + token);
    auto stream = stub_->Session(&session_context);
    v1::GenerateEvent e;
    EXPECT_FALSE(stream->Read(&e));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(*CheckHealth(channel_, ""), kServing);  // health needs no token

  const StreamResult ok = GenerateAs(*stub_, SmallRequest(81), kAcmeToken);
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kBetaToken);
  v1::ServerInfo info;
  EXPECT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());

  const std::string m = Metrics();
  EXPECT_THAT(m, HasSubstr("longsana_rejections_total{reason=\"unauthenticated\","
                           "tenant=\"anonymous\"} 6"));
  EXPECT_THAT(m, HasSubstr("longsana_sessions_ended_total{code=\"OK\",tenant=\"acme\"} 1"));
}

TEST_F(ServerOpsTest, QuotaExceededIsResourceExhaustedWithARetryAfterHint) {
  FakeEngineOptions slow;
  slow.step_time = 20ms;  // 481 frames: 12 blocks of 5 forwards, ~1.2 s
  StartWithTokens(slow);
  auto acme_stub = v1::LongSana::NewStub(channel_);
  grpc::ClientContext long_context;
  long_context.AddMetadata("authorization", std::string("Bearer ") + kAcmeToken);
  auto reader = acme_stub->Generate(&long_context, SmallRequest(481));
  v1::GenerateEvent e;
  ASSERT_TRUE(reader->Read(&e));
  ASSERT_TRUE(e.has_accepted());

  std::multimap<std::string, std::string> trailers;
  const StreamResult second = GenerateAs(*stub_, SmallRequest(81), kAcmeToken, "", &trailers);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(second.status.error_message(), HasSubstr("tenant acme"));
  EXPECT_THAT(second.status.error_message(), HasSubstr("max_sessions"));
  ASSERT_EQ(trailers.count("retry-after"), 1u);
  EXPECT_GE(std::stoi(trailers.find("retry-after")->second), 1);
  ASSERT_EQ(trailers.count("grpc-retry-pushback-ms"), 1u);

  // Another tenant is not affected by acme's quota.
  EXPECT_TRUE(GenerateAs(*stub_, SmallRequest(81), kBetaToken).status.ok());

  while (reader->Read(&e)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  // The quota is free again once the session has ended.
  EXPECT_TRUE(GenerateAs(*stub_, SmallRequest(81), kAcmeToken).status.ok());
  EXPECT_THAT(Metrics(),
              HasSubstr("longsana_rejections_total{reason=\"quota\",tenant=\"acme\"} 1"));
}

TEST_F(ServerOpsTest, QueuedSessionsBeyondTheTenantsMaxQueuedAreRefused) {
  FakeEngineOptions one_slot;
  one_slot.max_sessions = 1;
  one_slot.queue_size = 4;
  one_slot.step_time = 20ms;
  StartWithTokens(one_slot);
  // beta: max_queued 1. The first runs, the second waits, the third is over the quota.
  grpc::ClientContext c1, c2;
  c1.AddMetadata("authorization", std::string("Bearer ") + kBetaToken);
  c2.AddMetadata("authorization", std::string("Bearer ") + kBetaToken);
  auto r1 = stub_->Generate(&c1, SmallRequest(481));
  v1::GenerateEvent e;
  ASSERT_TRUE(r1->Read(&e));
  auto r2 = stub_->Generate(&c2, SmallRequest(81));
  ASSERT_TRUE(r2->Read(&e));
  ASSERT_TRUE(e.has_accepted());
  EXPECT_GT(e.accepted().queue_position(), 0u);
  const StreamResult third = GenerateAs(*stub_, SmallRequest(81), kBetaToken);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("max_queued"));
  while (r1->Read(&e)) {
  }
  while (r2->Read(&e)) {
  }
  EXPECT_TRUE(r1->Finish().ok());
  EXPECT_TRUE(r2->Finish().ok());
}

TEST_F(ServerOpsTest, PriorityAboveTheTenantsCeilingIsPermissionDenied) {
  StartWithTokens();
  v1::GenerateRequest request = SmallRequest(81);
  request.set_priority(4);  // acme's ceiling is 3
  const StreamResult r = GenerateAs(*stub_, request, kAcmeToken);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(r.status.error_message(), HasSubstr("priority: 4 is above tenant acme's ceiling"));
  request.set_priority(3);
  EXPECT_TRUE(GenerateAs(*stub_, request, kAcmeToken).status.ok());
}

TEST_F(ServerOpsTest, TokensNeverReachTheLog) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  StartWithTokens();
  GenerateAs(*stub_, SmallRequest(81), kAcmeToken, "req-42");
  GenerateAs(*stub_, SmallRequest(81), "wrong-token-0123456789abcdef");
  v1::GenerateRequest high = SmallRequest(81);
  high.set_priority(9);
  GenerateAs(*stub_, high, kAcmeToken);
  server_->Shutdown(2s);
  server_.reset();
  spdlog::set_default_logger(previous);
  const std::string log = captured.str();
  EXPECT_THAT(log, Not(HasSubstr(kAcmeToken)));
  EXPECT_THAT(log, Not(HasSubstr("wrong-token")));
  EXPECT_THAT(log, HasSubstr("tenant=acme request_id=req-42]"));
  EXPECT_THAT(log, HasSubstr("rejected (unauthenticated)"));
}

// ---------------------------------------------------------------------------------------
// Request ids and what GetServerInfo discloses

TEST_F(ServerOpsTest, RequestIdsAreEchoedOrGenerated) {
  StartServer();
  const StreamResult given = GenerateAs(*stub_, SmallRequest(81), "", "client-id-7");
  ASSERT_TRUE(given.accepted().has_value());
  EXPECT_EQ(given.accepted()->request_id(), "client-id-7");

  for (const std::string& bad : {std::string(), std::string("has space"), std::string(200, 'x')}) {
    const StreamResult made = GenerateAs(*stub_, SmallRequest(81), "", bad);
    ASSERT_TRUE(made.accepted().has_value());
    const std::string id = made.accepted()->request_id();
    EXPECT_EQ(id.size(), 32u) << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }

  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "meta-id");
  auto reader = stub_->Generate(&context, SmallRequest(81));
  v1::GenerateEvent e;
  while (reader->Read(&e)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  const auto& initial = context.GetServerInitialMetadata();
  const auto it = initial.find("x-request-id");
  ASSERT_NE(it, initial.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "meta-id");

  // A refusal is trailers-only (no response headers, which would commit the call and stop a
  // client's retry policy from trying another replica); the id is in the trailers.
  grpc::ClientContext refused;
  refused.AddMetadata("x-request-id", "refused-id");
  v1::GenerateRequest bad = SmallRequest(81);
  bad.set_width(17);
  auto refused_reader = stub_->Generate(&refused, bad);
  while (refused_reader->Read(&e)) {
  }
  EXPECT_EQ(refused_reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.GetServerInitialMetadata().count("x-request-id"), 0u);
  const auto& trailing = refused.GetServerTrailingMetadata();
  const auto t = trailing.find("x-request-id");
  ASSERT_NE(t, trailing.end());
  EXPECT_EQ(std::string(t->second.data(), t->second.size()), "refused-id");
}

TEST_F(ServerOpsTest, ServerInfoNamesTheModelWithoutItsPath) {
  StartServer();
  grpc::ClientContext context;
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.model().model_name(), "fake-model");
  EXPECT_THAT(info.DebugString(), Not(HasSubstr("/models")));
}

}  // namespace
}  // namespace longsana::testing
