// The gRPC server in process on a random localhost port, driven through real gRPC stubs,
// with the FakeEngine (tests/server/fake_engine.h) behind it: streaming order and content,
// validation, capacity, cancel, deadline, commands, slow readers, health, drain, reflection.
#include "server/server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/temp_dir.h"
#include "tests/server/fake_engine.h"
#include "tests/server/server_test_util.h"

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;
using server::Server;
using server::ServerOptions;

constexpr int kServing = 1;
constexpr int kNotServing = 2;

class ServerTest : public ::testing::Test {
 protected:
  // Starts the server (and, unless `with_engine` is false, hands it a FakeEngine).
  void StartServer(FakeEngineOptions engine_options = {}, ServerOptions options = {},
                   bool with_engine = true) {
    options.listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";  // never the default 8080: tests run in parallel
    options.health_poll_interval = 50ms;
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = MakeChannel(server_->address());
    stub_ = v1::LongSana::NewStub(channel_);
    engine_options_ = engine_options;
    if (with_engine) SetEngine();
  }
  void SetEngine() {
    engine_ = std::make_shared<FakeEngine>(engine_options_);
    server_->SetEngine(engine_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(2s);
  }

  FakeEngineOptions engine_options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<FakeEngine> engine_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LongSana::Stub> stub_;
};

std::string WriteVideo(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.File(name);
  WriteFile(path, bytes);
  return path;
}

// ---------------------------------------------------------------------------------------

TEST_F(ServerTest, GenerateStreamsAcceptedInitSegmentOneChunkPerBlockCompleted) {
  StartServer();
  const StreamResult r = RunGenerate(*stub_, SmallRequest(81));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_FALSE(r.events.empty());
  ASSERT_TRUE(r.events.front().has_accepted());
  const v1::Accepted& a = r.events.front().accepted();
  EXPECT_EQ(a.width(), 64u);
  EXPECT_EQ(a.height(), 64u);
  EXPECT_EQ(a.num_frames(), 81u);
  EXPECT_EQ(a.num_blocks(), 2u);
  EXPECT_EQ(a.seed(), 7u);
  EXPECT_EQ(a.queue_position(), 0u);
  ASSERT_TRUE(r.events.back().has_completed());
  EXPECT_EQ(r.events.back().completed().frames(), 81u);
  EXPECT_EQ(r.events.back().completed().blocks(), 2u);

  const auto chunks = r.Chunks();
  ASSERT_EQ(chunks.size(), 3u);  // init + 2 blocks
  EXPECT_EQ(chunks[0].sequence(), 0u);
  EXPECT_EQ(chunks[0].block_index(), -1);
  EXPECT_NE(chunks[0].data().find("moov"), std::string::npos);
  EXPECT_TRUE(chunks[0].mime_type().starts_with("video/mp4"));
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(chunks[b + 1].sequence(), static_cast<uint64_t>(b + 1));
    EXPECT_EQ(chunks[b + 1].block_index(), b);
    EXPECT_EQ(chunks[b + 1].first_frame(), a.block_first_frames(b));
    EXPECT_EQ(chunks[b + 1].data().substr(4, 4), "moof");
  }
  EXPECT_EQ(chunks[1].num_frames(), 41u);
  EXPECT_EQ(chunks[2].num_frames(), 40u);
  // Progress of a block comes before its chunk.
  int64_t last_chunk_block = -1;
  for (const auto& e : r.events) {
    if (e.has_progress()) {
      EXPECT_GT(static_cast<int64_t>(e.progress().block()), last_chunk_block);
    }
    if (e.has_chunk()) last_chunk_block = e.chunk().block_index();
  }

  TempDir dir;
  auto probe = FfprobeVideo(WriteVideo(dir, "out.mp4", r.Video()));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->codec, "h264");
  EXPECT_EQ(probe->width, 64);
  EXPECT_EQ(probe->height, 64);
  EXPECT_EQ(probe->frames, 81);
}

TEST_F(ServerTest, DefaultsAndDurationAreResolvedInAccepted) {
  StartServer();
  v1::GenerateRequest req;
  req.set_prompt("a quiet street");
  req.set_duration_seconds(2.5);
  const StreamResult r = RunGenerate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const auto a = r.accepted();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->width(), 64u);  // the fake model's default size
  EXPECT_EQ(a->height(), 64u);
  EXPECT_EQ(a->num_frames(), 41u);
  EXPECT_NE(a->seed(), 0u);  // picked by the engine and reported
  EXPECT_EQ(a->timesteps_size(), 4);
  EXPECT_EQ(a->num_cached_blocks(), -1);
  EXPECT_EQ(a->motion_score(), 10);
}

TEST_F(ServerTest, EveryInvalidFieldIsRejectedNamingTheField) {
  engine_options_.max_pixels = 192 * 192;
  StartServer(engine_options_);
  struct Case {
    std::string field;  // expected at the start of the status message
    std::function<void(v1::GenerateRequest&)> mutate;
  };
  const std::vector<Case> cases = {
      {"prompt:", [](auto& r) { r.set_prompt(""); }},
      {"prompt:", [](auto& r) { r.set_prompt("  \n\t "); }},
      {"prompt:", [](auto& r) { r.set_prompt(std::string(16 * 1024 + 1, 'x')); }},
      {"width:", [](auto& r) { r.set_width(100); }},
      {"width:", [](auto& r) { r.set_width(16); }},   // below the model's 32
      {"width:", [](auto& r) { r.set_width(272); }},  // above the model's 256
      {"height:", [](auto& r) { r.set_height(50); }},
      {"num_frames:", [](auto& r) { r.set_num_frames(0); }},
      {"num_frames:", [](auto& r) { r.set_num_frames(80); }},
      {"num_frames:", [](auto& r) { r.set_num_frames(965); }},
      {"duration_seconds:", [](auto& r) { r.set_duration_seconds(-1); }},
      {"duration_seconds:", [](auto& r) { r.set_duration_seconds(0); }},
      {"duration_seconds:",
       [](auto& r) { r.set_duration_seconds(std::numeric_limits<double>::quiet_NaN()); }},
      {"duration_seconds:", [](auto& r) { r.set_duration_seconds(3600); }},
      {"timesteps[1]:",
       [](auto& r) {
         r.add_timesteps(1000);
         r.add_timesteps(1000);
       }},
      {"timesteps[1]:",
       [](auto& r) {
         r.add_timesteps(500);
         r.add_timesteps(700);
       }},
      {"timesteps[0]:", [](auto& r) { r.add_timesteps(0); }},
      {"timesteps[0]:", [](auto& r) { r.add_timesteps(1001); }},
      {"timesteps:",
       [](auto& r) {
         for (int i = 0; i < 51; ++i) r.add_timesteps(1000 - 10 * i);
       }},
      {"num_cached_blocks:", [](auto& r) { r.set_num_cached_blocks(0); }},
      {"num_cached_blocks:", [](auto& r) { r.set_num_cached_blocks(-2); }},
      {"motion_score:", [](auto& r) { r.set_motion_score(0); }},
      {"motion_score:", [](auto& r) { r.set_motion_score(101); }},
      {"prompt_timeline[0].block:",
       [](auto& r) {
         auto* s = r.add_prompt_timeline();
         s->set_block(0);
         s->set_prompt("x");
       }},
      {"prompt_timeline[0].block:",  // 81 frames = 2 blocks: only block 1 can switch
       [](auto& r) {
         auto* s = r.add_prompt_timeline();
         s->set_block(2);
         s->set_prompt("x");
       }},
      {"prompt_timeline[1].block:",
       [](auto& r) {
         r.set_num_frames(161);
         for (uint32_t b : {2u, 2u}) {
           auto* s = r.add_prompt_timeline();
           s->set_block(b);
           s->set_prompt("x");
         }
       }},
      {"prompt_timeline[0].prompt:",
       [](auto& r) {
         auto* s = r.add_prompt_timeline();
         s->set_block(1);
       }},
      {"output.codec:",
       [](auto& r) { r.mutable_output()->set_codec(static_cast<v1::OutputOptions::Codec>(7)); }},
      {"output.container:",
       [](auto& r) {
         r.mutable_output()->set_container(static_cast<v1::OutputOptions::Container>(9));
       }},
      {"output.crf:", [](auto& r) { r.mutable_output()->set_crf(52); }},
      {"output.crf:", [](auto& r) { r.mutable_output()->set_crf(0); }},
      {"output.crf:",
       [](auto& r) {
         r.mutable_output()->set_crf(20);
         r.mutable_output()->set_bitrate_bps(1'000'000);
       }},
      {"output.bitrate_bps:", [](auto& r) { r.mutable_output()->set_bitrate_bps(5); }},
      {"output.preset:", [](auto& r) { r.mutable_output()->set_preset("turbo"); }},
      {"priority:", [](auto& r) { r.set_priority(5000); }},
      // Allowed by the server's checks, refused by the engine's model-dependent ones: the
      // engine's InvalidArgument passes through unchanged.
      {"width x height:",
       [](auto& r) {
         r.set_width(256);
         r.set_height(256);
       }},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest req = SmallRequest(81);
    c.mutate(req);
    const StreamResult r = RunGenerate(*stub_, req, 10s);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field << " -> " << r.status.error_message();
    EXPECT_TRUE(r.status.error_message().starts_with(c.field))
        << "expected '" << c.field << "', got: " << r.status.error_message();
    EXPECT_TRUE(r.events.empty()) << c.field;
  }
  // Nothing reached the engine except the one the engine itself refused.
  EXPECT_TRUE(engine_->SessionIds().empty());
  EXPECT_EQ(engine_->Stats().running, 0);
}

TEST_F(ServerTest, InvalidUtf8PromptNeverReachesTheEngine) {
  StartServer();
  v1::GenerateRequest req = SmallRequest(81);
  req.set_prompt("caf\xc3");  // truncated UTF-8 sequence
  const StreamResult r = RunGenerate(*stub_, req, 10s);
  // proto3 string fields are UTF-8 checked by the protobuf parser before the handler runs;
  // gRPC C++ 1.51 then ends a callback-API call with UNIMPLEMENTED (no message). Clients
  // that bypass protobuf are caught by ValidatePrompt (INVALID_ARGUMENT "prompt: is not
  // valid UTF-8", see proto_mapping_test).
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(r.events.empty());
  EXPECT_TRUE(engine_->SessionIds().empty());
}

TEST_F(ServerTest, CapacityFullQueuesWithPositionQueueFullIsResourceExhausted) {
  engine_options_.max_sessions = 1;
  engine_options_.queue_size = 1;
  StartServer(engine_options_);
  engine_->SetPaused(true);
  OpenStream a(*stub_, SmallRequest(81));
  ASSERT_TRUE(a.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  EXPECT_EQ(a.events[0].accepted().queue_position(), 0u);
  OpenStream b(*stub_, SmallRequest(81));
  ASSERT_TRUE(b.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  EXPECT_EQ(b.events[0].accepted().queue_position(), 1u);

  const StreamResult c = RunGenerate(*stub_, SmallRequest(81), 10s);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << c.status.error_message();
  EXPECT_TRUE(c.events.empty());
  {
    // A full replica: a retry-after hint but no gRPC pushback, so that a client's retry
    // policy tries another replica at once.
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, SmallRequest(81));
    v1::GenerateEvent e;
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(ctx.GetServerTrailingMetadata().count("retry-after"), 1u);
    EXPECT_EQ(ctx.GetServerTrailingMetadata().count("grpc-retry-pushback-ms"), 0u);
  }

  v1::ServerInfo info;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &info).ok());
  }
  EXPECT_EQ(info.capacity().running(), 1u);
  EXPECT_EQ(info.capacity().queued(), 1u);
  EXPECT_EQ(info.capacity().admissible(), 0u);
  EXPECT_EQ(info.capacity().rejected(), 2u);

  engine_->SetPaused(false);
  EXPECT_TRUE(a.Finish().ok());
  EXPECT_TRUE(b.Finish().ok());
  // B was told when it left the queue.
  bool saw_queued = false;
  for (const auto& e : b.events) saw_queued = saw_queued || e.has_queued();
  EXPECT_TRUE(saw_queued);
  EXPECT_TRUE(b.events.back().has_completed());
  EXPECT_EQ(engine_->Stats().completed, 2u);
}

TEST_F(ServerTest, CancelMidStreamFreesTheSlotAndTheQueuedSessionStarts) {
  engine_options_.max_sessions = 1;
  engine_options_.queue_size = 4;
  engine_options_.step_time = 5ms;
  StartServer(engine_options_);
  OpenStream a(*stub_, SmallRequest(961));  // 24 blocks: long enough to cancel mid-way
  ASSERT_TRUE(
      a.ReadUntil([](const auto& e) { return e.has_chunk() && e.chunk().block_index() == 0; }));
  OpenStream b(*stub_, SmallRequest(81));
  ASSERT_TRUE(b.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  EXPECT_EQ(b.events[0].accepted().queue_position(), 1u);

  a.context.TryCancel();
  EXPECT_EQ(a.Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(engine_->WaitEnded(a.id(), 10s));
  const auto rec = engine_->GetRecord(a.id());
  EXPECT_EQ(rec->end_status.code(), absl::StatusCode::kCancelled) << rec->end_status;
  EXPECT_LT(rec->blocks_done, 24);

  const grpc::Status bs = b.Finish();
  EXPECT_TRUE(bs.ok()) << bs.error_message();
  ASSERT_TRUE(b.events.back().has_completed());
  EXPECT_TRUE(engine_->GetRecord(b.id())->admitted);
  EXPECT_EQ(engine_->Stats().running, 0);
  EXPECT_EQ(engine_->Stats().cancelled, 1u);
}

TEST_F(ServerTest, DeadlineExceededCancelsTheSession) {
  engine_options_.step_time = 5ms;
  StartServer(engine_options_);
  OpenStream a(*stub_, SmallRequest(961), 400ms);
  ASSERT_TRUE(a.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  EXPECT_EQ(a.Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(engine_->WaitEnded(a.id(), 10s));
  const auto code = engine_->GetRecord(a.id())->end_status.code();
  EXPECT_TRUE(code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kCancelled)
      << engine_->GetRecord(a.id())->end_status;
  EXPECT_EQ(engine_->Stats().running, 0);
}

TEST_F(ServerTest, ConcurrentSessionsAllComplete) {
  StartServer();  // 2 slots: two sessions run batched, two wait in the queue
  std::vector<std::future<StreamResult>> results;
  for (int i = 0; i < 4; ++i) {
    results.push_back(std::async(std::launch::async, [&, i] {
      v1::GenerateRequest req = SmallRequest(81);
      req.set_seed(100 + i);
      return RunGenerate(*stub_, req, 60s);
    }));
  }
  for (auto& f : results) {
    const StreamResult r = f.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.Chunks().size(), 3u);
  }
}

// ---------------------------------------------------------------------------------------
// Session streams

class SessionStream {
 public:
  explicit SessionStream(v1::LongSana::Stub& stub) { stream_ = stub.Session(&context_); }
  bool Send(const v1::SessionCommand& c) { return stream_->Write(c); }
  bool Start(const v1::GenerateRequest& r) {
    v1::SessionCommand c;
    *c.mutable_start() = r;
    return Send(c);
  }
  bool Switch(uint64_t id, const std::string& prompt,
              v1::SwitchPrompt::Mode mode = v1::SwitchPrompt::MODE_IMMEDIATE) {
    v1::SessionCommand c;
    c.set_command_id(id);
    c.mutable_switch_prompt()->set_prompt(prompt);
    c.mutable_switch_prompt()->set_mode(mode);
    return Send(c);
  }
  bool ReadUntil(const std::function<bool(const v1::GenerateEvent&)>& pred) {
    v1::GenerateEvent e;
    while (stream_->Read(&e)) {
      result.events.push_back(e);
      if (pred(e)) return true;
    }
    return false;
  }
  void Finish() {
    stream_->WritesDone();
    ReadUntil([](const auto&) { return false; });
    result.status = stream_->Finish();
  }
  engine::SessionId id() const { return std::stoull(result.events.at(0).accepted().session_id()); }

  StreamResult result;

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionCommand, v1::GenerateEvent>> stream_;
};

TEST_F(ServerTest, SessionPromptSwitchIsAcknowledgedWithTheBlockWhereItTakesEffect) {
  // 8 blocks of 5 x 20 ms: the switch, sent after block 0, has blocks left to land in even
  // when the client runs slowly (ThreadSanitizer, a loaded machine).
  engine_options_.step_time = 20ms;
  StartServer(engine_options_);
  SessionStream s(*stub_);
  v1::GenerateRequest req = SmallRequest(321);  // 8 blocks
  req.set_prompt("a calm lake at dawn");
  ASSERT_TRUE(s.Start(req));
  ASSERT_TRUE(
      s.ReadUntil([](const auto& e) { return e.has_chunk() && e.chunk().block_index() == 0; }));
  ASSERT_TRUE(s.Switch(7, "a thunderstorm over the lake", v1::SwitchPrompt::MODE_RECACHE));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  const v1::CommandAck ack = s.result.events.back().command_ack();
  EXPECT_EQ(ack.command_id(), 7u);
  EXPECT_EQ(ack.code(), 0);
  EXPECT_EQ(ack.detail(), "recache");
  const uint32_t at = ack.effective_block();
  EXPECT_GE(at, 1u);
  EXPECT_LE(at, 7u);
  s.Finish();
  ASSERT_TRUE(s.result.status.ok()) << s.result.status.error_message();
  EXPECT_EQ(s.result.Acks().size(), 1u);  // exactly once

  // The ack precedes the chunk of the block it names, and that block used the new prompt.
  bool ack_seen = false;
  for (const auto& e : s.result.events) {
    if (e.has_command_ack()) ack_seen = true;
    if (e.has_chunk() && e.chunk().block_index() == static_cast<int32_t>(at)) {
      EXPECT_TRUE(ack_seen);
    }
  }
  const auto rec = engine_->GetRecord(s.id());
  ASSERT_EQ(rec->block_prompts.size(), 8u);
  for (uint32_t b = 0; b < 8; ++b) {
    EXPECT_EQ(rec->block_prompts[b],
              b < at ? "a calm lake at dawn" : "a thunderstorm over the lake")
        << "block " << b;
  }
  EXPECT_TRUE(rec->spec.interactive);
}

TEST_F(ServerTest, SessionExtendStopAndRefusedCommands) {
  engine_options_.step_time = 5ms;
  StartServer(engine_options_);
  SessionStream s(*stub_);
  engine_->SetPaused(true);
  ASSERT_TRUE(s.Start(SmallRequest(81)));  // 2 blocks
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_accepted(); }));

  v1::SessionCommand bad_extend;
  bad_extend.set_command_id(1);
  bad_extend.mutable_extend()->set_num_frames(3);
  ASSERT_TRUE(s.Send(bad_extend));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  EXPECT_EQ(s.result.events.back().command_ack().command_id(), 1u);
  EXPECT_EQ(s.result.events.back().command_ack().code(), 3);  // INVALID_ARGUMENT
  EXPECT_TRUE(
      s.result.events.back().command_ack().error_message().starts_with("extend.num_frames:"));

  v1::SessionCommand empty;  // no command set
  empty.set_command_id(2);
  ASSERT_TRUE(s.Send(empty));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  EXPECT_EQ(s.result.events.back().command_ack().command_id(), 2u);
  EXPECT_EQ(s.result.events.back().command_ack().code(), 3);

  v1::SessionCommand too_long;  // valid on its own; the engine refuses the total length
  too_long.set_command_id(10);
  too_long.mutable_extend()->set_num_frames(900);
  ASSERT_TRUE(s.Send(too_long));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  EXPECT_EQ(s.result.events.back().command_ack().command_id(), 10u);
  EXPECT_EQ(s.result.events.back().command_ack().code(), 3);
  EXPECT_TRUE(
      s.result.events.back().command_ack().error_message().starts_with("extend.num_frames:"))
      << s.result.events.back().command_ack().error_message();

  v1::SessionCommand extend;
  extend.set_command_id(11);  // ids must increase
  extend.mutable_extend()->set_num_frames(400);  // + 10 blocks: room for the stop below
  ASSERT_TRUE(s.Send(extend));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  EXPECT_EQ(s.result.events.back().command_ack().command_id(), 11u);
  EXPECT_EQ(s.result.events.back().command_ack().code(), 0);
  EXPECT_EQ(s.result.events.back().command_ack().effective_block(), 2u);

  engine_->SetPaused(false);
  ASSERT_TRUE(
      s.ReadUntil([](const auto& e) { return e.has_chunk() && e.chunk().block_index() == 1; }));
  engine_->SetPaused(true);  // the video cannot end before the stop arrives
  v1::SessionCommand stop;
  stop.set_command_id(12);
  stop.mutable_stop();
  ASSERT_TRUE(s.Send(stop));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_command_ack(); }));
  engine_->SetPaused(false);
  s.Finish();
  ASSERT_TRUE(s.result.status.ok()) << s.result.status.error_message();
  const auto acks = s.result.Acks();
  ASSERT_EQ(acks.size(), 5u);
  EXPECT_EQ(acks[4].command_id(), 12u);
  const uint32_t last = acks[4].effective_block();
  const auto done = s.result.completed();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->blocks(), last + 1);  // stopped after the block the ack named
  EXPECT_GE(done->blocks(), 2u);
  EXPECT_LE(done->blocks(), 12u);
  EXPECT_EQ(s.result.Chunks().size(), done->blocks() + 1);
  TempDir dir;
  auto probe = FfprobeVideo(WriteVideo(dir, "session.mp4", s.result.Video()));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, done->frames());
}

TEST_F(ServerTest, SessionProtocolErrors) {
  StartServer();
  {
    SessionStream s(*stub_);  // first command is not `start`
    ASSERT_TRUE(s.Switch(1, "hello"));
    s.Finish();
    EXPECT_EQ(s.result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(s.result.status.error_message().starts_with("command:"))
        << s.result.status.error_message();
  }
  {
    SessionStream s(*stub_);  // start is validated like Generate, fields under start.
    v1::GenerateRequest req = SmallRequest(81);
    req.set_width(100);
    ASSERT_TRUE(s.Start(req));
    s.Finish();
    EXPECT_EQ(s.result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(s.result.status.error_message().starts_with("start.width:"))
        << s.result.status.error_message();
  }
  {
    SessionStream s(*stub_);  // a second start ends the stream and cancels the session
    engine_->SetPaused(true);
    ASSERT_TRUE(s.Start(SmallRequest(81)));
    ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_accepted(); }));
    ASSERT_TRUE(s.Start(SmallRequest(81)));
    s.Finish();
    engine_->SetPaused(false);
    EXPECT_EQ(s.result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(s.result.status.error_message().starts_with("start:"));
    ASSERT_TRUE(engine_->WaitEnded(s.id(), 10s));
  }
  {
    SessionStream s(*stub_);  // half-closed without any command
    s.Finish();
    EXPECT_EQ(s.result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(ServerTest, HalfClosingASessionDoesNotStopGeneration) {
  StartServer();
  SessionStream s(*stub_);
  ASSERT_TRUE(s.Start(SmallRequest(81)));
  s.Finish();  // WritesDone right after start
  ASSERT_TRUE(s.result.status.ok()) << s.result.status.error_message();
  ASSERT_TRUE(s.result.completed().has_value());
  EXPECT_EQ(s.result.completed()->frames(), 81u);
}

// ---------------------------------------------------------------------------------------
// Backpressure

TEST_F(ServerTest, SlowReaderPausesOnlyItsOwnSession) {
  engine_options_.max_sessions = 2;
  engine_options_.step_time = 2ms;
  ServerOptions options;
  options.outbox_chunks = 2;
  StartServer(engine_options_, options);

  // The slow client's channel advertises a small HTTP/2 window, so unread chunks stay in
  // the server's outbox instead of the transport's buffers.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto slow_channel = MakeChannel(server_->address(), args);
  auto slow_stub = v1::LongSana::NewStub(slow_channel);
  v1::GenerateRequest slow_req = SmallRequest(481);  // 12 blocks
  slow_req.set_width(128);
  slow_req.set_height(128);
  slow_req.mutable_output()->set_crf(1);  // near-lossless: large chunks
  OpenStream slow(*slow_stub, slow_req);
  ASSERT_TRUE(slow.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  // ... and then reads nothing while another session runs to completion.
  const StreamResult fast = RunGenerate(*stub_, SmallRequest(161), 60s);
  ASSERT_TRUE(fast.status.ok()) << fast.status.error_message();
  EXPECT_EQ(fast.Chunks().size(), 5u);

  std::this_thread::sleep_for(200ms);  // the slow session would have finished by now
  const auto paused = engine_->GetRecord(slow.id());
  EXPECT_LT(paused->blocks_done, 12) << "the slow reader's session was not paused";
  EXPECT_GT(paused->congested_iterations, 0);
  EXPECT_FALSE(paused->ended);

  // Once the reader catches up the session resumes and completes with every chunk.
  const grpc::Status st = slow.Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  StreamResult all;
  all.events = slow.events;
  EXPECT_EQ(all.Chunks().size(), 13u);
  ASSERT_TRUE(all.completed().has_value());
  EXPECT_EQ(all.completed()->frames(), 481u);
  TempDir dir;
  auto probe = FfprobeVideo(WriteVideo(dir, "slow.mp4", all.Video()));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, 481);
}

// ---------------------------------------------------------------------------------------
// Hostile or broken clients: per-peer cap, command rate, connection and message bounds

TEST_F(ServerTest, PerPeerCapRefusesBeyondItAndAcceptsAgainOnceAStreamEnds) {
  ServerOptions options;
  options.max_sessions_per_peer = 2;
  engine_options_.queue_size = 8;
  StartServer(engine_options_, options);
  engine_->SetPaused(true);
  auto a = std::make_unique<OpenStream>(*stub_, SmallRequest(81));
  ASSERT_TRUE(a->ReadUntil([](const auto& e) { return e.has_accepted(); }));
  SessionStream b(*stub_);
  ASSERT_TRUE(b.Start(SmallRequest(81)));
  ASSERT_TRUE(b.ReadUntil([](const auto& e) { return e.has_accepted(); }));

  const StreamResult third = RunGenerate(*stub_, SmallRequest(81), 10s);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.status.error_message().find("--max_sessions_per_peer"), std::string::npos)
      << third.status.error_message();
  SessionStream fourth(*stub_);
  ASSERT_TRUE(fourth.Start(SmallRequest(81)));
  fourth.Finish();
  EXPECT_EQ(fourth.result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(engine_->SessionIds().size(), 2u) << "a refused session reached the engine";

  // One stream ends (cancelled by its client): its host may start another. The server
  // gives the slot back when the call is done, which may trail the client's status a little.
  a->context.TryCancel();
  EXPECT_EQ(a->Finish().error_code(), grpc::StatusCode::CANCELLED);
  a.reset();
  bool accepted = false;
  for (int attempt = 0; attempt < 100 && !accepted; ++attempt) {
    OpenStream again(*stub_, SmallRequest(81), 10s);
    accepted = again.ReadUntil([](const auto& e) { return e.has_accepted(); });
    if (!accepted) {
      const grpc::Status st = again.Finish();
      ASSERT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
      std::this_thread::sleep_for(50ms);
    } else {
      again.context.TryCancel();
      again.Finish();
    }
  }
  EXPECT_TRUE(accepted);
  engine_->SetPaused(false);
  b.Finish();
  EXPECT_TRUE(b.result.status.ok()) << b.result.status.error_message();
}

TEST_F(ServerTest, RateLimitedCommandsAreThrottledNotRefusedAndTheLastOneWins) {
  ServerOptions options;
  options.command_rate = 100;
  options.command_burst = 5;
  StartServer(engine_options_, options);
  engine_->SetPaused(true);  // no block starts: every switch is accepted
  SessionStream s(*stub_);
  ASSERT_TRUE(s.Start(SmallRequest(161)));
  ASSERT_TRUE(s.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  constexpr int kCommands = 200;
  for (int i = 1; i <= kCommands; ++i) {
    ASSERT_TRUE(s.Switch(i, fmt::format("prompt {}", i))) << i;
  }
  int acks = 0;
  ASSERT_TRUE(
      s.ReadUntil([&](const auto& e) { return e.has_command_ack() && ++acks == kCommands; }));
  engine_->SetPaused(false);
  s.Finish();
  ASSERT_TRUE(s.result.status.ok()) << s.result.status.error_message();
  const auto all = s.result.Acks();
  ASSERT_EQ(all.size(), static_cast<size_t>(kCommands));
  for (int i = 0; i < kCommands; ++i) {
    EXPECT_EQ(all[i].command_id(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(all[i].code(), 0) << all[i].detail();
  }
  const auto rec = engine_->GetRecord(s.id());
  ASSERT_TRUE(rec.has_value());
  ASSERT_EQ(rec->block_prompts.size(), 4u);
  for (const std::string& p : rec->block_prompts) EXPECT_EQ(p, "prompt 200");
}

TEST_F(ServerTest, AnIdleConnectionIsClosedByTheServer) {
  ServerOptions options;
  options.max_connection_idle = 300ms;
  StartServer(engine_options_, options);
  auto channel = MakeChannel(server_->address());
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + 10s));
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // No call: the server sends GOAWAY after the idle time and the channel leaves READY.
  EXPECT_TRUE(
      channel->WaitForStateChange(GRPC_CHANNEL_READY, std::chrono::system_clock::now() + 20s));
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_READY);
}

TEST_F(ServerTest, KeepaliveAndConnectionBoundsAcceptClientPings) {
  ServerOptions options;
  options.keepalive_time = 200ms;
  options.keepalive_timeout = 5s;
  options.min_client_ping_interval = 100ms;
  StartServer(engine_options_, options);
  // A client pinging every 200 ms, even between calls, is not told "too many pings": its
  // channel stays usable across an idle second.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 200);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto channel = MakeChannel(server_->address(), args);
  auto stub = v1::LongSana::NewStub(channel);
  ASSERT_TRUE(RunGenerate(*stub, SmallRequest(81), 30s).status.ok());
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  ASSERT_TRUE(RunGenerate(*stub, SmallRequest(81), 30s).status.ok());
}

TEST_F(ServerTest, MessageSizeBounds) {
  ServerOptions options;
  options.max_receive_message_bytes = 64 << 10;
  StartServer(engine_options_, options);
  // Receive: an oversized request is refused by gRPC before any of our code runs.
  v1::GenerateRequest big = SmallRequest(81);
  big.set_prompt(std::string(100 << 10, 'a'));
  const StreamResult r = RunGenerate(*stub_, big, 10s);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << r.status.error_message();
  EXPECT_TRUE(engine_->SessionIds().empty());

  // A client whose receive limit is below the chunk size (what --max_receive_bytes guards
  // against) fails the call instead of hanging; the server frees the session.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(1024);
  auto small_stub = v1::LongSana::NewStub(MakeChannel(server_->address(), args));
  v1::GenerateRequest req = SmallRequest(81);
  req.mutable_output()->set_crf(1);
  const StreamResult tiny = RunGenerate(*small_stub, req, 30s);
  EXPECT_EQ(tiny.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << tiny.status.error_message();
}

TEST_F(ServerTest, AChunkAboveTheSendLimitEndsTheStream) {
  ServerOptions options;
  options.max_send_message_bytes = 1024;  // far below a 64x64 near-lossless fragment
  StartServer(engine_options_, options);
  v1::GenerateRequest req = SmallRequest(81);
  req.mutable_output()->set_crf(1);
  const StreamResult r = RunGenerate(*stub_, req, 30s);
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << r.status.error_message();
  ASSERT_EQ(engine_->SessionIds().size(), 1u);
  EXPECT_TRUE(engine_->WaitEnded(engine_->SessionIds()[0], 10s));
}

// ---------------------------------------------------------------------------------------
// Health, drain, info, reflection

TEST_F(ServerTest, HealthNotServingWhileLoadingThenServing) {
  StartServer({}, {}, /*with_engine=*/false);
  EXPECT_EQ(*CheckHealth(channel_, ""), kNotServing);
  EXPECT_EQ(*CheckHealth(channel_, "longsana.v1.LongSana"), kNotServing);
  const StreamResult r = RunGenerate(*stub_, SmallRequest(81), 10s);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(r.status.error_message().starts_with("loading")) << r.status.error_message();
  {
    v1::ServerInfo info;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->GetServerInfo(&ctx, {}, &info).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  SetEngine();
  EXPECT_EQ(*CheckHealth(channel_, ""), kServing);
  EXPECT_EQ(*CheckHealth(channel_, "longsana.v1.LongSana"), kServing);
  EXPECT_TRUE(RunGenerate(*stub_, SmallRequest(81), 30s).status.ok());
}

TEST_F(ServerTest, DrainTurnsHealthNotServingRefusesNewSessionsAndFinishesRunningOnes) {
  engine_options_.step_time = 5ms;
  StartServer(engine_options_);
  OpenStream a(*stub_, SmallRequest(241));  // 6 blocks
  ASSERT_TRUE(a.ReadUntil([](const auto& e) { return e.has_chunk(); }));
  auto drained = std::async(std::launch::async, [&] { server_->Drain(30s); });
  EXPECT_TRUE(WaitForHealth(channel_, "", kNotServing, 5s));
  EXPECT_EQ(*CheckHealth(channel_, "longsana.v1.LongSana"), kNotServing);
  const StreamResult late = RunGenerate(*stub_, SmallRequest(81), 10s);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(late.status.error_message().starts_with("draining")) << late.status.error_message();
  {
    v1::ServerInfo info;  // still answered, saying so
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &info).ok());
    EXPECT_TRUE(info.capacity().draining());
  }
  const grpc::Status st = a.Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(a.events.back().has_completed());
  drained.get();
  server_->Shutdown(2s);
}

TEST_F(ServerTest, DrainTimeoutEndsRunningSessionsWithUnavailable) {
  StartServer();
  engine_->SetPaused(true);  // never finishes on its own
  OpenStream a(*stub_, SmallRequest(81));
  ASSERT_TRUE(a.ReadUntil([](const auto& e) { return e.has_accepted(); }));
  server_->Drain(300ms);
  const grpc::Status st = a.Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  server_->Shutdown(2s);
}

TEST_F(ServerTest, UnhealthyEngineTurnsHealthNotServing) {
  StartServer();
  EXPECT_EQ(*CheckHealth(channel_, ""), kServing);
  EXPECT_EQ(*CheckHealth(channel_, "liveness"), kServing);
  engine_->SetHealthy(false);
  EXPECT_TRUE(WaitForHealth(channel_, "", kNotServing, 5s));
  EXPECT_EQ(*CheckHealth(channel_, "liveness"), kNotServing);  // the pod restarts
  const StreamResult r = RunGenerate(*stub_, SmallRequest(81), 10s);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(server_->serving());
}

TEST_F(ServerTest, GetServerInfoReportsModelLimitsAndCapacity) {
  StartServer();
  v1::ServerInfo info;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &info).ok());
  EXPECT_EQ(info.version(), "fake");
  EXPECT_NE(info.build().find("gRPC"), std::string::npos);
  EXPECT_EQ(info.model().pipeline_class(), "FakePipeline");
  EXPECT_EQ(info.limits().default_width(), 64u);
  EXPECT_EQ(info.limits().max_dimension(), 256u);
  EXPECT_EQ(info.limits().max_num_frames(), 961u);
  EXPECT_EQ(info.limits().block_frames(), 40u);
  EXPECT_EQ(info.capacity().max_sessions(), 2u);
  EXPECT_EQ(info.capacity().admissible(), 2u);
  EXPECT_FALSE(info.capacity().draining());
}

TEST_F(ServerTest, ReflectionListsTheService) {
  StartServer();
  auto names = ListServicesByReflection(channel_);
  ASSERT_TRUE(names.ok()) << names.status();
  auto has = [&](const std::string& n) {
    return std::find(names->begin(), names->end(), n) != names->end();
  };
  EXPECT_TRUE(has("longsana.v1.LongSana"));
  EXPECT_TRUE(has("grpc.health.v1.Health"));
  EXPECT_TRUE(has("grpc.reflection.v1alpha.ServerReflection"));
}

TEST_F(ServerTest, ABusyPortFailsToStart) {
  StartServer();
  ServerOptions options;
  options.listen = server_->address();
  auto second = Server::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace longsana::testing
