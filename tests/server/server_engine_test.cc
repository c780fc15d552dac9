// The gRPC server in process with the real engine (CreateEngine on the tiny checkpoint,
// CPU): the streamed MP4, batching invariance through gRPC and a prompt switch.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "engine/api/engine.h"
#include "server/server.h"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"
#include "tests/server/server_test_util.h"

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;

class ServerEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::EngineConfig config;
    config.model_dir = TinyModelDir();
    config.caption_len = 24;
    config.max_sessions = 4;
    config.queue_size = 4;
    config.max_num_frames = 321;
    config.encoder_threads = 1;  // x264 with one thread: deterministic bytes
    auto engine = engine::CreateEngine(config);
    ASSERT_TRUE(engine.ok()) << engine.status();
    server::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";  // never the default 8080: tests run in parallel
    auto server = server::Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server).release();
    server_->SetEngine(std::shared_ptr<engine::Engine>(std::move(*engine)));
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) server_->Shutdown(5s);
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = v1::LongSana::NewStub(MakeChannel(server_->address()));
  }

  static server::Server* server_;
  std::unique_ptr<v1::LongSana::Stub> stub_;
};

server::Server* ServerEngineTest::server_ = nullptr;

TEST_F(ServerEngineTest, GenerateStreamsAPlayableMp4WithTheRequestedFrames) {
  const StreamResult r = RunGenerate(*stub_, SmallRequest(81), 300s);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_TRUE(r.events.front().has_accepted());
  EXPECT_EQ(r.events.front().accepted().num_blocks(), 2u);
  ASSERT_TRUE(r.events.back().has_completed());
  const auto chunks = r.Chunks();
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].block_index(), -1);
  EXPECT_EQ(chunks[1].num_frames(), 41u);
  EXPECT_EQ(chunks[2].num_frames(), 40u);
  TempDir dir;
  const std::string path = dir.File("tiny.mp4");
  WriteFile(path, r.Video());
  auto probe = FfprobeVideo(path);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->codec, "h264");
  EXPECT_EQ(probe->width, 64);
  EXPECT_EQ(probe->height, 64);
  EXPECT_EQ(probe->frames, 81);
}

TEST_F(ServerEngineTest, TheSameRequestAloneAndBatchedWithThreeOthersGivesIdenticalBytes) {
  v1::GenerateRequest request = SmallRequest(81);
  request.set_seed(11);
  const StreamResult alone = RunGenerate(*stub_, request, 300s);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();

  std::vector<std::future<StreamResult>> others;
  for (int i = 0; i < 3; ++i) {
    others.push_back(std::async(std::launch::async, [&, i] {
      v1::GenerateRequest other = SmallRequest(81);
      other.set_seed(100 + i);
      other.set_prompt("another prompt, number " + std::to_string(i));
      return RunGenerate(*stub_, other, 300s);
    }));
  }
  const StreamResult batched = RunGenerate(*stub_, request, 300s);
  for (auto& f : others) {
    const StreamResult o = f.get();
    EXPECT_TRUE(o.status.ok()) << o.status.error_message();
  }
  ASSERT_TRUE(batched.status.ok()) << batched.status.error_message();
  EXPECT_EQ(alone.accepted()->seed(), batched.accepted()->seed());
  ASSERT_EQ(alone.Chunks().size(), batched.Chunks().size());
  std::string differing;
  for (size_t i = 0; i < alone.Chunks().size(); ++i) {
    if (alone.Chunks()[i].data() != batched.Chunks()[i].data()) {
      differing += " " + std::to_string(i);
    }
  }
  EXPECT_TRUE(differing.empty()) << "batching changed the bytes of chunk(s)" << differing;
}

TEST_F(ServerEngineTest, SessionPromptSwitchIsAcknowledgedBeforeItsBlock) {
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  v1::SessionCommand start;
  *start.mutable_start() = SmallRequest(161);  // 4 blocks
  ASSERT_TRUE(stream->Write(start));
  std::vector<v1::GenerateEvent> events;
  v1::GenerateEvent e;
  while (stream->Read(&e)) {
    events.push_back(e);
    if (e.has_chunk() && e.chunk().block_index() == 0) break;
  }
  v1::SessionCommand sw;
  sw.set_command_id(42);
  sw.mutable_switch_prompt()->set_prompt("the same scene at night");
  ASSERT_TRUE(stream->Write(sw));
  stream->WritesDone();
  while (stream->Read(&e)) events.push_back(e);
  const grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  int acks = 0;
  int64_t ack_block = -1;
  int64_t chunk_of_ack_block_index = -1;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].has_command_ack()) {
      ++acks;
      EXPECT_EQ(events[i].command_ack().command_id(), 42u);
      EXPECT_EQ(events[i].command_ack().code(), 0) << events[i].command_ack().error_message();
      ack_block = events[i].command_ack().effective_block();
    }
    if (events[i].has_chunk() && events[i].chunk().block_index() == ack_block &&
        chunk_of_ack_block_index < 0) {
      chunk_of_ack_block_index = static_cast<int64_t>(i);
    }
  }
  EXPECT_EQ(acks, 1);
  EXPECT_GE(ack_block, 1);
  EXPECT_LE(ack_block, 3);
  EXPECT_GE(chunk_of_ack_block_index, 0) << "no chunk for the acknowledged block";
  ASSERT_TRUE(events.back().has_completed());
  EXPECT_EQ(events.back().completed().frames(), 161u);
}

TEST_F(ServerEngineTest, SessionExtendRightAfterStartAddsExactlyTheRequestedFrames) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);  // ~10 s when it works
  auto stream = stub_->Session(&context);
  v1::SessionCommand start;
  *start.mutable_start() = SmallRequest(161);  // 4 blocks
  ASSERT_TRUE(stream->Write(start));
  v1::SessionCommand extend;  // what `longsana session` sends for "/extend 80": 2 blocks more
  extend.set_command_id(1);
  extend.mutable_extend()->set_num_frames(80);
  ASSERT_TRUE(stream->Write(extend));
  stream->WritesDone();
  StreamResult r;
  v1::GenerateEvent e;
  while (stream->Read(&e)) r.events.push_back(e);
  r.status = stream->Finish();
  ASSERT_TRUE(r.status.ok()) << r.status.error_code() << " " << r.status.error_message();
  ASSERT_EQ(r.Acks().size(), 1u);
  EXPECT_EQ(r.Acks()[0].code(), 0);
  EXPECT_EQ(r.Acks()[0].effective_block(), 4u);
  ASSERT_TRUE(r.completed().has_value());
  EXPECT_EQ(r.completed()->frames(), 241u);
  EXPECT_EQ(r.Chunks().size(), 7u);  // init + 6 blocks
  TempDir dir;
  WriteFile(dir.File("extended.mp4"), r.Video());
  auto probe = FfprobeVideo(dir.File("extended.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, 241);
}

// --max-sessions 2 and four clients that stop reading after Accepted: once their outboxes
// are full, the stall budget ends each of them with DEADLINE_EXCEEDED and frees its slot,
// and a normal client queued behind them completes.
TEST(ServerEngineBounds, ClientsThatStopReadingAreEndedAndANormalClientCompletes) {
  engine::EngineConfig config;
  config.model_dir = TinyModelDir();
  config.caption_len = 24;
  config.max_sessions = 2;
  config.queue_size = 8;
  config.stall_timeout = 1s;
  config.policy.min_crf = 1;
  auto engine = engine::CreateEngine(config);
  ASSERT_TRUE(engine.ok()) << engine.status();
  server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.http_listen = "127.0.0.1:0";  // never the default 8080: tests run in parallel
  options.outbox_chunks = 2;
  auto server = server::Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->SetEngine(std::shared_ptr<engine::Engine>(std::move(*engine)));
  auto stub = v1::LongSana::NewStub(MakeChannel((*server)->address()));
  // The clients that stop reading advertise a small HTTP/2 window (no BDP growth), so
  // unread chunks stay in the server's outbox instead of the transport's buffers.
  grpc::ChannelArguments small_window;
  small_window.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small_window.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto stuck_stub = v1::LongSana::NewStub(MakeChannel((*server)->address(), small_window));

  v1::GenerateRequest big = SmallRequest(481);  // 12 blocks
  big.set_width(128);
  big.set_height(128);
  big.mutable_output()->set_crf(1);  // near-lossless: large chunks
  std::vector<std::unique_ptr<OpenStream>> stuck;
  for (int i = 0; i < 4; ++i) {
    big.set_seed(100 + i);
    stuck.push_back(std::make_unique<OpenStream>(*stuck_stub, big));
    ASSERT_TRUE(stuck.back()->ReadUntil([](const auto& e) { return e.has_accepted(); }))
        << stuck.back()->Finish().error_message();
  }
  const StreamResult normal = RunGenerate(*stub, SmallRequest(41), 300s);
  EXPECT_TRUE(normal.status.ok()) << normal.status.error_message();
  ASSERT_TRUE(normal.completed().has_value());
  EXPECT_EQ(normal.completed()->frames(), 41u);
  for (auto& s : stuck) {
    const grpc::Status status = s->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
    EXPECT_NE(status.error_message().find("--stall-timeout"), std::string::npos)
        << status.error_message();
  }
  (*server)->Shutdown(5s);
}

}  // namespace
}  // namespace longsana::testing
