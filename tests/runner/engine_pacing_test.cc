// Pacing, the time budget and prompt transitions on the real engine and the tiny
// checkpoint. The engine runs at 80 fps here, so a 40-frame block lasts 0.5 s of real time
// and a paced video plays out in seconds; the rules do not depend on the frame rate.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "engine/scheduler/pacing.h"
#include "engine/text/text_encoder.h"
#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {
namespace {

using longsana::testing::RecordingSink;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kFps = 80;
constexpr double kBlockSeconds = 40.0 / kFps;  // 0.5 s (block 0: 37 frames)

EngineConfig PacedConfig() {
  EngineConfig c = TinyConfig();
  c.fps = kFps;
  c.default_pacing = Pacing::kRealTime;
  c.min_lookahead_seconds = 0.1;
  return c;
}

SessionSpec PacedSpec(int blocks, double lookahead = kBlockSeconds) {
  SessionSpec s = Spec(1 + 4 * (10 * blocks - 1));
  s.width = 32;
  s.height = 32;
  s.interactive = true;
  s.pacing = Pacing::kRealTime;
  s.lookahead_seconds = lookahead;
  return s;
}

double BlockStart(int64_t block) { return block == 0 ? 0.0 : (40.0 * block - 3) / kFps; }

// Records, for a paced session, how far ahead of its viewer each block started. The viewer
// is modelled as the engine defines it (engine/scheduler/pacing.h): real time from the first
// chunk, never past what was delivered.
class ViewerSink : public RecordingSink {
 public:
  void OnProgress(int64_t block, int step, int num_steps) override {
    if (step == 1) {
      std::lock_guard lock(viewer_mu_);
      ahead_.push_back(BlockStart(block) - clock_.Position(Clock::now()));
    }
    RecordingSink::OnProgress(block, step, num_steps);
  }
  void OnChunk(VideoChunk chunk) override {
    if (chunk.block_index >= 0) {
      std::lock_guard lock(viewer_mu_);
      clock_.Delivered(Clock::now(),
                       static_cast<double>(chunk.first_frame + chunk.num_frames) / kFps);
    }
    RecordingSink::OnChunk(std::move(chunk));
  }
  // Seconds of video each block was ahead of the viewer when its first step finished.
  std::vector<double> Ahead() {
    std::lock_guard lock(viewer_mu_);
    return ahead_;
  }

 private:
  std::mutex viewer_mu_;
  PlaybackClock clock_;
  std::vector<double> ahead_;
};

TEST(Pacing, ASwitchSentAfterChunkKTakesEffectByBlockKPlus2) {
  auto engine = MakeEngine(PacedConfig());
  ASSERT_NE(engine, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(PacedSpec(12), sink);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->paced);
  EXPECT_DOUBLE_EQ(info->lookahead_seconds, kBlockSeconds);
  uint64_t command = 0;
  std::map<uint64_t, int64_t> effective;
  for (int64_t k = 0; k < 10; ++k) {
    ASSERT_TRUE(sink->WaitChunks(k + 2)) << "block " << k;  // init segment + blocks 0..k
    const uint64_t id = ++command;
    auto ack = Switch(*engine, info->id, id, "a green heron, take " + std::to_string(k));
    ASSERT_TRUE(ack.ok() && ack->status.ok()) << ack.status();
    EXPECT_LE(ack->effective_block, k + 2) << "switch after chunk " << k;
    effective[id] = ack->effective_block;
  }
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  // Each switch is reported visible on its effective block's chunk (unless a later switch
  // took the same block), within lookahead + one block of where the viewer was.
  int reported = 0;
  for (const VideoChunk& c : sink->chunks) {
    if (!c.switch_visible) continue;
    ++reported;
    EXPECT_EQ(effective.at(c.switch_visible->command_id), c.block_index);
    EXPECT_EQ(c.prompt_command_id, c.switch_visible->command_id);
    EXPECT_GE(c.switch_visible->latency_seconds, 0);
    EXPECT_GE(c.switch_visible->playback_delay_seconds, 0);
    EXPECT_LE(c.switch_visible->playback_delay_seconds, 2 * kBlockSeconds + kBlockSeconds / 2)
        << "block " << c.block_index;
  }
  EXPECT_GE(reported, 5);
}

TEST(Pacing, FourPacedSessionsStayWithinTheirLookaheadBesideABatchSession) {
  EngineConfig config = PacedConfig();
  config.max_sessions = 5;
  config.realtime_utilization = 0;  // pacing alone: all five at once, whatever they cost
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  std::vector<std::shared_ptr<ViewerSink>> paced;
  for (int i = 0; i < 4; ++i) {
    paced.push_back(std::make_shared<ViewerSink>());
    SessionSpec spec = PacedSpec(8);
    spec.seed = 100 + i;
    ASSERT_TRUE(engine->Submit(spec, paced.back()).ok());
  }
  auto batch = std::make_shared<RecordingSink>();
  SessionSpec batch_spec = PacedSpec(8);
  batch_spec.pacing = Pacing::kAsFastAsPossible;
  batch_spec.lookahead_seconds = 0;
  auto batch_info = engine->Submit(batch_spec, batch);
  ASSERT_TRUE(batch_info.ok()) << batch_info.status();
  EXPECT_FALSE(batch_info->paced);
  for (auto& s : paced) {
    ASSERT_TRUE(s->WaitDone());
    ASSERT_TRUE(s->status.ok()) << s->status;
    EXPECT_EQ(s->stats.blocks, 8);
    const auto ahead = s->Ahead();
    ASSERT_EQ(ahead.size(), 8u);
    for (size_t b = 0; b < ahead.size(); ++b) {
      // Measured after the block's first forward, so a little less than when it started.
      EXPECT_LE(ahead[b], kBlockSeconds + 0.05) << "block " << b;
    }
  }
  ASSERT_TRUE(batch->WaitDone());
  ASSERT_TRUE(batch->status.ok()) << batch->status;
  // The batch session ran on what the paced ones left (on two CPU cores that may be little,
  // so it may end last) and made its whole video; the paced ones did not run ahead: their
  // videos (3.96 s each) took about their duration minus the lookahead.
  EXPECT_EQ(batch->stats.blocks, 8);
  for (auto& s : paced) EXPECT_GE(s->stats.total_seconds, 3.96 - 2 * kBlockSeconds);
}

TEST(Pacing, APausedViewerHoldsGenerationAtTheLookahead) {
  auto engine = MakeEngine(PacedConfig());
  ASSERT_NE(engine, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(PacedSpec(10), sink);
  ASSERT_TRUE(info.ok()) << info.status();
  auto pause = engine->Command(info->id, 1, SessionCommand(PositionCommand{0.0, true}));
  ASSERT_TRUE(pause.ok() && pause->status.ok()) << pause.status();
  EXPECT_EQ(pause->effective_block, 0);
  // Blocks 0 and 1 start within the lookahead of a viewer at 0 s; block 2 (0.96 s) never.
  ASSERT_TRUE(sink->WaitChunks(3));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(sink->NumChunks(), 3u);  // the init segment and blocks 0, 1
  EXPECT_FALSE(sink->done);
  auto play = engine->Command(info->id, 2, SessionCommand(PositionCommand{0.0, false}));
  ASSERT_TRUE(play.ok() && play->status.ok()) << play.status();
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_EQ(sink->stats.blocks, 10);
  auto bad = engine->Command(info->id, 3, SessionCommand(PositionCommand{-1.0, false}));
  EXPECT_FALSE(bad.ok());  // the session has ended (NotFound) or the value is bad
}

TEST(Pacing, PositionReportsAreValidatedAndAcceptedAfterStop) {
  auto engine = MakeEngine(PacedConfig());
  ASSERT_NE(engine, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(PacedSpec(10), sink);
  ASSERT_TRUE(info.ok()) << info.status();
  auto bad = engine->Command(info->id, 1, SessionCommand(PositionCommand{-1.0, false}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("position.seconds"));
  ASSERT_TRUE(Stop(*engine, info->id, 2).ok());
  auto after = engine->Command(info->id, 3, SessionCommand(PositionCommand{0.2, false}));
  EXPECT_TRUE(after.ok()) << after.status();
  ASSERT_TRUE(sink->WaitDone());
}

TEST(Pacing, LookaheadOutsideTheBoundsIsRefusedNamingTheField) {
  auto engine = MakeEngine(PacedConfig());
  ASSERT_NE(engine, nullptr);
  SessionSpec spec = PacedSpec(2, /*lookahead=*/1e6);
  const absl::Status status = engine->ValidateSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("lookahead_seconds"));
  spec.lookahead_seconds = std::nan("");
  EXPECT_EQ(engine->ValidateSpec(spec).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TimeBudget, WithCapacityForTwoStreamsTheThirdIsQueuedWithAnEstimateAndStartsWhenOneEnds) {
  EngineConfig config = PacedConfig();
  config.realtime_capacity = 2;
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  std::vector<SessionInfo> infos;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    SessionSpec spec = PacedSpec(i == 0 ? 3 : 6);
    auto info = engine->Submit(spec, sinks.back());
    ASSERT_TRUE(info.ok()) << info.status();
    infos.push_back(*info);
  }
  EXPECT_EQ(infos[0].queue_position, 0);
  EXPECT_EQ(infos[1].queue_position, 0);
  EXPECT_EQ(infos[2].queue_position, 1);  // slots are free; the time budget is not
  EXPECT_EQ(engine->Stats().admissible, 0);
  EXPECT_NEAR(engine->Stats().realtime_load, 0.9, 1e-9);
  ASSERT_TRUE(sinks[0]->WaitDone());
  ASSERT_TRUE(sinks[2]->WaitDone());
  for (auto& s : sinks) ASSERT_TRUE(s->WaitDone());
  for (auto& s : sinks) ASSERT_TRUE(s->status.ok()) << s->status;
  {
    std::lock_guard lock(sinks[2]->mu_);
    ASSERT_FALSE(sinks[2]->queued_estimates.empty());
    // Session 0 (1.4 s of video, lookahead 0.5 s) was expected to end within about a second.
    EXPECT_GT(sinks[2]->queued_estimates.front(), 0);
    EXPECT_LT(sinks[2]->queued_estimates.front(), 2.0);
  }
  // It started once the shortest one had ended, not before.
  // (The two callbacks run on different engine threads: allow for their hand-over.)
  EXPECT_GE(sinks[2]->started_at + 50ms, sinks[0]->done_at);
  EXPECT_LT(sinks[2]->started_at, sinks[1]->done_at);
}

TEST(Transition, BlocksBlendTheCaptionsByTheDocumentedWeights) {
  // Hold the session (a viewer paused at 0 lets blocks 0 and 1 start) so the switch lands
  // at block 2, then let it play.
  auto run = [](int transition_blocks) {
    auto engine = MakeEngine(PacedConfig());
    auto sink = std::make_shared<RecordingSink>();
    auto info = engine->Submit(PacedSpec(7), sink);
    EXPECT_TRUE(info.ok()) << info.status();
    EXPECT_TRUE(
        engine->Command(info->id, 1, SessionCommand(PositionCommand{0.0, true}))->status.ok());
    EXPECT_TRUE(sink->WaitChunks(3));  // blocks 0 and 1 made; block 2 waits for the viewer
    auto ack = engine->Command(
        info->id, 2,
        SessionCommand(SwitchPromptCommand{"a purple comet", PromptSwitchMode::kImmediate,
                                           transition_blocks}));
    EXPECT_TRUE(ack.ok() && ack->status.ok()) << ack.status();
    EXPECT_EQ(ack->effective_block, 2);
    EXPECT_TRUE(
        engine->Command(info->id, 3, SessionCommand(PositionCommand{0.0, false}))->status.ok());
    EXPECT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status.ok()) << sink->status;
    return sink;
  };
  auto blended = run(2);
  auto immediate = run(0);
  ASSERT_EQ(blended->chunks.size(), 8u);
  const std::vector<std::pair<uint64_t, double>> expected = {
      {0, 1.0}, {0, 1.0}, {2, 1.0 / 3}, {2, 2.0 / 3}, {2, 1.0}, {2, 1.0}, {2, 1.0}};
  for (size_t b = 0; b < expected.size(); ++b) {
    const VideoChunk& c = blended->chunks[b + 1];
    EXPECT_EQ(c.prompt_command_id, expected[b].first) << "block " << b;
    EXPECT_NEAR(c.prompt_weight, expected[b].second, 1e-12) << "block " << b;
    EXPECT_EQ(immediate->chunks[b + 1].prompt_weight, 1.0) << "block " << b;
  }
  EXPECT_TRUE(blended->chunks[3].switch_visible.has_value());
  // Same seed: the blocks before the switch are identical; the blended one is not.
  EXPECT_EQ(blended->ChunkDigest(1), immediate->ChunkDigest(1));
  EXPECT_EQ(blended->ChunkDigest(2), immediate->ChunkDigest(2));
  EXPECT_NE(blended->ChunkDigest(3), immediate->ChunkDigest(3));
}

TEST(Transition, OutOfRangeIsRefused) {
  auto engine = MakeEngine(PacedConfig());
  ASSERT_NE(engine, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(PacedSpec(4), sink);
  ASSERT_TRUE(info.ok());
  auto ack = engine->Command(
      info->id, 1,
      SessionCommand(SwitchPromptCommand{"x", PromptSwitchMode::kImmediate, 17}));
  ASSERT_FALSE(ack.ok());
  EXPECT_THAT(ack.status().message(), ::testing::HasSubstr("transition_blocks"));
  engine->Cancel(info->id, absl::CancelledError("test over"));
  ASSERT_TRUE(sink->WaitDone());
}

TEST(Transition, BlendCaptionsIsTheElementwiseLerpWithUnitedMasks) {
  Caption a, b;
  a.embedding = at::randn({6, 4});
  b.embedding = at::randn({6, 4});
  a.mask = at::tensor({1, 1, 0, 0, 0, 0}, at::kLong);
  b.mask = at::tensor({1, 1, 1, 1, 0, 0}, at::kLong);
  a.num_tokens = 2;
  b.num_tokens = 4;
  const Caption c = BlendCaptions(a, b, 0.25);
  EXPECT_TRUE(at::allclose(c.embedding, 0.75 * a.embedding + 0.25 * b.embedding));
  EXPECT_TRUE(at::equal(c.mask, b.mask));
  EXPECT_EQ(c.num_tokens, 4);
  EXPECT_TRUE(at::allclose(BlendCaptions(a, b, 0).embedding, a.embedding));
  EXPECT_TRUE(at::allclose(BlendCaptions(a, b, 1).embedding, b.embedding));
}

}  // namespace
}  // namespace longsana::engine
