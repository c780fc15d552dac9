// rpc Watch with an in-process server and the FakeEngine (real fMP4 fragments): viewers get
// byte-identical fragments from their join point, a late viewer's file decodes on its own,
// a viewer that never reads holds back nobody, the errors; and `longsana watch` end to end
// against longsana-server-fake.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
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

constexpr int kServing = 1;
constexpr const char* kAcmeToken = "acme-token-0123456789abcdef";
constexpr const char* kBetaToken = "beta-token-0123456789abcdef";

// A Watch call read incrementally from the test thread.
struct OpenWatch {
  OpenWatch(v1::LongSana::Stub& stub, const std::string& session_id,
            const std::string& token = "") {
    context.set_deadline(std::chrono::system_clock::now() + 60s);
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    v1::WatchRequest request;
    request.set_session_id(session_id);
    reader = stub.Watch(&context, request);
  }
  StreamResult Finish() {
    StreamResult r;
    v1::GenerateEvent e;
    while (reader->Read(&e)) r.events.push_back(e);
    r.status = reader->Finish();
    return r;
  }

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader;
};

StreamResult RunWatch(v1::LongSana::Stub& stub, const std::string& session_id,
                      const std::string& token = "") {
  return OpenWatch(stub, session_id, token).Finish();
}

// Fragments (not the init segment) by sequence.
std::map<uint64_t, v1::VideoChunk> Fragments(const StreamResult& r) {
  std::map<uint64_t, v1::VideoChunk> out;
  for (const auto& c : r.Chunks()) {
    if (c.block_index() >= 0) out.emplace(c.sequence(), c);
  }
  return out;
}

// The session's events until its first fragment has arrived (so that it is watchable and
// has a keyframe to join at).
bool ReadUntilFragment(OpenStream& owner, int fragments = 1) {
  int seen = 0;
  return owner.ReadUntil([&](const v1::GenerateEvent& e) {
    return e.has_chunk() && e.chunk().keyframe() && ++seen >= fragments;
  });
}

// What a viewer's stream must look like: Watching, the init segment, fragments from a
// keyframe on with increasing sequences.
void ExpectWellFormed(const StreamResult& r, const std::string& session_id) {
  ASSERT_GE(r.events.size(), 2u);
  ASSERT_TRUE(r.events[0].has_watching()) << r.events[0].DebugString();
  EXPECT_EQ(r.events[0].watching().session().session_id(), session_id);
  ASSERT_TRUE(r.events[1].has_chunk());
  EXPECT_EQ(r.events[1].chunk().sequence(), 0u);
  EXPECT_FALSE(r.events[1].chunk().keyframe());
  const auto chunks = r.Chunks();
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_TRUE(chunks[1].keyframe());
  for (size_t i = 2; i < chunks.size(); ++i) {
    EXPECT_GT(chunks[i].sequence(), chunks[i - 1].sequence());
  }
}

class WatchTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, FakeEngineOptions engine_options = {}) {
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.health_poll_interval = 50ms;
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = MakeChannel(server_->address());
    stub_ = v1::LongSana::NewStub(channel_);
    engine_ = std::make_shared<FakeEngine>(engine_options);
    server_->SetEngine(engine_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(2s);
  }
  std::string Metrics() {
    auto reply = HttpGet(server_->http_address(), "/metrics");
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->body : "";
  }
  // A few seconds of session: 24 blocks of 5 forwards.
  static FakeEngineOptions SlowEngine() {
    FakeEngineOptions o;
    o.step_time = 15ms;
    return o;
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<FakeEngine> engine_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LongSana::Stub> stub_;
};

TEST_F(WatchTest, TwoViewersGetByteIdenticalFragmentsFromTheirJoinPoints) {
  StartServer({}, SlowEngine());
  OpenStream owner(*stub_, SmallRequest(961), 60s);
  ASSERT_TRUE(ReadUntilFragment(owner));
  const std::string id = owner.events.at(0).accepted().session_id();
  auto first = std::async(std::launch::async, [&] { return RunWatch(*stub_, id); });
  ASSERT_TRUE(ReadUntilFragment(owner, 3));
  auto second = std::async(std::launch::async, [&] { return RunWatch(*stub_, id); });
  ASSERT_TRUE(owner.Finish().ok());
  StreamResult owner_result{owner.events, grpc::Status::OK};
  const StreamResult a = first.get();
  const StreamResult b = second.get();
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  ExpectWellFormed(a, id);
  ExpectWellFormed(b, id);
  ASSERT_TRUE(a.completed().has_value());
  EXPECT_EQ(a.completed()->frames(), 961u);

  const auto owners = Fragments(owner_result);
  const auto fa = Fragments(a);
  const auto fb = Fragments(b);
  ASSERT_FALSE(fa.empty());
  ASSERT_FALSE(fb.empty());
  EXPECT_EQ(fa.rbegin()->first, owners.rbegin()->first);  // both saw the last block
  int common = 0;
  for (const auto& [sequence, chunk] : fb) {
    const auto it = fa.find(sequence);
    if (it == fa.end()) continue;
    ++common;
    EXPECT_EQ(chunk.data(), it->second.data()) << "sequence " << sequence;
    EXPECT_EQ(chunk.first_frame(), it->second.first_frame());
    EXPECT_EQ(chunk.data(), owners.at(sequence).data()) << "sequence " << sequence;
  }
  EXPECT_GT(common, 0);
  // The init segments are the owner's.
  EXPECT_EQ(a.Chunks()[0].data(), owner_result.Chunks()[0].data());
  EXPECT_EQ(b.Chunks()[0].data(), owner_result.Chunks()[0].data());
}

TEST_F(WatchTest, ALateViewerStartsAtABlockStartThatDecodesOnItsOwn) {
  StartServer({}, SlowEngine());
  OpenStream owner(*stub_, SmallRequest(481), 60s);
  ASSERT_TRUE(ReadUntilFragment(owner, 4));
  const std::string id = owner.events.at(0).accepted().session_id();
  const StreamResult viewer = RunWatch(*stub_, id);
  ASSERT_TRUE(owner.Finish().ok());
  ASSERT_TRUE(viewer.status.ok()) << viewer.status.error_message();
  ExpectWellFormed(viewer, id);
  const auto fragments = Fragments(viewer);
  ASSERT_FALSE(fragments.empty());
  // Joined late, not at the start: the broadcast has every fragment its owner has read,
  // so the viewer starts at the fourth keyframe or later.
  EXPECT_GE(fragments.begin()->first, 4u);
  int64_t frames = 0;
  for (const auto& [sequence, chunk] : fragments) frames += chunk.num_frames();
  TempDir dir;
  WriteFile(dir.File("late.mp4"), viewer.Video());
  auto probe = FfprobeVideo(dir.File("late.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, frames);
  EXPECT_EQ(probe->width, 64);
  EXPECT_EQ(probe->codec, "h264");
}

TEST_F(WatchTest, AViewerThatNeverReadsHoldsBackNeitherTheSessionNorAnotherViewer) {
  ServerOptions options;
  options.watch_buffer_chunks = 2;
  FakeEngineOptions engine = SlowEngine();
  engine.max_dimension = 256;
  StartServer(options, engine);
  v1::GenerateRequest request = SmallRequest(961);
  request.set_width(256);
  request.set_height(256);
  OpenStream owner(*stub_, request, 60s);
  ASSERT_TRUE(ReadUntilFragment(owner));
  const std::string id = owner.events.at(0).accepted().session_id();
  // Its own connection with a tiny HTTP/2 window, so that the server's writes to it stall.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stuck_channel = MakeChannel(server_->address(), args);
  auto stuck_stub = v1::LongSana::NewStub(stuck_channel);
  OpenWatch stuck(*stuck_stub, id);  // never read until the session is over
  auto reader = std::async(std::launch::async, [&] { return RunWatch(*stub_, id); });
  const grpc::Status owner_status = owner.Finish();
  ASSERT_TRUE(owner_status.ok()) << owner_status.error_message();
  const StreamResult other = reader.get();
  ASSERT_TRUE(other.status.ok()) << other.status.error_message();
  ExpectWellFormed(other, id);
  // The reading viewer got every fragment from its join point to the last block.
  const auto got = Fragments(other);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.rbegin()->first, 24u);
  EXPECT_EQ(got.size(), got.rbegin()->first - got.begin()->first + 1);
  // The session was never paused for a viewer.
  auto record = engine_->GetRecord(std::stoull(id));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->blocks_done, 24);
  // The stuck viewer's stream has ended with the session: what it holds is whole groups,
  // then Completed and OK.
  const StreamResult late = stuck.Finish();
  EXPECT_TRUE(late.status.ok()) << late.status.error_message();
  ExpectWellFormed(late, id);
  EXPECT_TRUE(late.completed().has_value());
  EXPECT_LT(Fragments(late).size(), 24u);
  EXPECT_GT(ScrapeSample(Metrics(), "longsana_watch_skipped_chunks_total"), 0);
  // Every viewer has left once its reactor is done (which follows the client's status).
  double watchers = -1;
  for (int i = 0; i < 100 && watchers != 0; ++i) {
    watchers = ScrapeSample(Metrics(), "longsana_watchers");
    if (watchers != 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(watchers, 0);
}

TEST_F(WatchTest, ErrorsAndTheViewerCap) {
  ServerOptions options;
  options.max_watchers_per_session = 1;
  StartServer(options);
  // Malformed and unknown ids.
  StreamResult r = RunWatch(*stub_, "abc");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("session_id:"));
  r = RunWatch(*stub_, "");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = RunWatch(*stub_, "123456789");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(r.status.error_message(), HasSubstr("session_id:"));

  // A session held at its start: one viewer fits, the second does not.
  engine_->SetPaused(true);
  OpenStream owner(*stub_, SmallRequest(81), 60s);
  ASSERT_TRUE(owner.ReadUntil([](const v1::GenerateEvent& e) { return e.has_accepted(); }));
  const std::string id = owner.events.at(0).accepted().session_id();
  OpenWatch viewer(*stub_, id);
  v1::GenerateEvent first;
  ASSERT_TRUE(viewer.reader->Read(&first));
  EXPECT_TRUE(first.has_watching());
  EXPECT_EQ(first.watching().viewers(), 1u);
  EXPECT_EQ(ScrapeSample(Metrics(), "longsana_watchers"), 1);
  r = RunWatch(*stub_, id);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(r.status.error_message(), HasSubstr("--max_watchers_per_session"));

  // The owner cancels: the viewer's stream ends with the session's status.
  owner.context.TryCancel();
  owner.Finish();
  const StreamResult ended = viewer.Finish();
  EXPECT_EQ(ended.status.error_code(), grpc::StatusCode::CANCELLED);
  engine_->SetPaused(false);
  // Ended: NOT_FOUND.
  r = RunWatch(*stub_, id);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string m = Metrics();
  EXPECT_THAT(m,
              HasSubstr("longsana_rejections_total{reason=\"not_found\",tenant=\"anonymous\"} 2"));
  EXPECT_THAT(
      m, HasSubstr("longsana_rejections_total{reason=\"watcher_limit\",tenant=\"anonymous\"} 1"));

  // Draining: UNAVAILABLE, like every RPC.
  server_->Drain(1s);
  r = RunWatch(*stub_, id);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(WatchTest, OnlyTheSessionsOwnTenantMayWatch) {
  TempDir dir;
  WriteFile(dir.File("tokens.yaml"), fmt::format("tenants:\n  - name: acme\n    token: {}\n"
                                                 "  - name: beta\n    token: {}\n",
                                                 kAcmeToken, kBetaToken));
  ServerOptions options;
  options.auth_tokens_file = dir.File("tokens.yaml");
  StartServer(options);
  engine_->SetPaused(true);
  grpc::ClientContext owner_context;
  owner_context.AddMetadata("authorization", std::string("Bearer ") + kAcmeToken);
  auto owner = stub_->Generate(&owner_context, SmallRequest(81));
  v1::GenerateEvent accepted;
  ASSERT_TRUE(owner->Read(&accepted));
  const std::string id = accepted.accepted().session_id();

  StreamResult r = RunWatch(*stub_, id, kBetaToken);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);  // not PERMISSION_DENIED
  const StreamResult unknown = RunWatch(*stub_, "987654321", kBetaToken);
  EXPECT_EQ(r.status.error_message(),
            fmt::format("session_id: no running session {}", id));  // like an unknown one
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::NOT_FOUND);
  r = RunWatch(*stub_, id);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  auto owner_done = std::async(std::launch::async, [&] {
    v1::GenerateEvent e;
    while (owner->Read(&e)) {
    }
    return owner->Finish();
  });
  OpenWatch mine(*stub_, id, kAcmeToken);
  v1::GenerateEvent watching;
  ASSERT_TRUE(mine.reader->Read(&watching));  // joined while the session is held
  EXPECT_TRUE(watching.has_watching());
  engine_->SetPaused(false);
  const StreamResult rest = mine.Finish();
  EXPECT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_TRUE(rest.completed().has_value());
  EXPECT_EQ(rest.Chunks().size(), 3u);  // init + both blocks
  EXPECT_TRUE(owner_done.get().ok());
}

// ---------------------------------------------------------------------------------------
// `longsana watch` against the server program.

TEST(WatchE2E, CliWatchWritesAnMp4ThatFfprobeReads) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  ASSERT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 30s));
  auto stub = v1::LongSana::NewStub(MakeChannel(s.address));
  OpenStream owner(*stub, SmallRequest(481), 60s);
  ASSERT_TRUE(ReadUntilFragment(owner, 2));
  const std::string id = owner.events.at(0).accepted().session_id();
  auto finished = std::async(std::launch::async, [&] { return owner.Finish(); });
  const std::string out = dir.File("watched.mp4");
  int code = -1;
  const std::string text =
      RunCommand(fmt::format("'{}/longsana' watch {} -o '{}' --server {} --timeout 60 2>&1",
                             BinaryDir(), id, out, s.address),
                 &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_THAT(text, HasSubstr("of the session's 481 frames"));
  EXPECT_TRUE(finished.get().ok());
  auto probe = FfprobeVideo(out);
  ASSERT_TRUE(probe.ok()) << probe.status() << "\n" << text;
  EXPECT_GT(probe->frames, 0);
  EXPECT_LE(probe->frames, 481);
  EXPECT_EQ(probe->width, 64);

  const std::string bad =
      RunCommand(fmt::format("'{}/longsana' watch 12345 -o '{}' --server {} 2>&1", BinaryDir(),
                             dir.File("none.mp4"), s.address),
                 &code);
  EXPECT_EQ(code, 10 + 5) << bad;  // NOT_FOUND
  EXPECT_THAT(bad, HasSubstr("NOT_FOUND: session_id:"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("none.mp4")));
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
}

}  // namespace
}  // namespace longsana::testing
