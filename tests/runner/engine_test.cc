// The real engine on the tiny checkpoint: streaming, batching invariance, queueing,
// cancellation, commands, backpressure, failure isolation, drain, validation.
#include "engine/api/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "engine/common/fault_injection.h"
#include "tests/common/testdata.h"
#include "tests/runner/batch_invariance.h"
#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::RecordingSink;
using ::testing::HasSubstr;

TEST(Engine, StreamsTheInitSegmentThenOneChunkPerBlock) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(Spec(81), sink);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->queue_position, 0);
  EXPECT_EQ(info->num_blocks, 2);  // 21 latent frames: [0, 11), [11, 21)
  EXPECT_EQ(info->block_first_frames, (std::vector<int64_t>{0, 41}));
  EXPECT_EQ(info->seed, 7u);
  EXPECT_GT(info->slot_bytes, 0);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_TRUE(sink->started);
  ASSERT_EQ(sink->chunks.size(), 3u);
  EXPECT_EQ(sink->chunks[0].sequence, 0);
  EXPECT_EQ(sink->chunks[0].block_index, -1);
  EXPECT_EQ(sink->chunks[0].bytes.substr(4, 4), "ftyp");
  EXPECT_THAT(sink->chunks[0].mime_type, HasSubstr("avc1."));
  EXPECT_EQ(sink->chunks[1].block_index, 0);
  EXPECT_EQ(sink->chunks[1].first_frame, 0);
  EXPECT_EQ(sink->chunks[1].num_frames, 41);
  EXPECT_EQ(sink->chunks[1].bytes.substr(4, 4), "moof");
  EXPECT_EQ(sink->chunks[2].block_index, 1);
  EXPECT_EQ(sink->chunks[2].first_frame, 41);
  EXPECT_EQ(sink->chunks[2].num_frames, 40);
  EXPECT_DOUBLE_EQ(sink->chunks[2].presentation_seconds, 41.0 / 16);
  EXPECT_EQ(sink->progress.size(), 10u);  // 2 blocks x (4 steps + cache pass)
  EXPECT_EQ(sink->progress.back(), (std::pair<int64_t, int>{1, 4}));
  EXPECT_EQ(sink->stats.frames, 81);
  EXPECT_EQ(sink->stats.blocks, 2);
  EXPECT_GT(sink->stats.generation_fps, 0);
  EXPECT_EQ(sink->stats.block_timings.size(), 2u);
  const EngineStats stats = IdleStats(*engine);
  EXPECT_EQ(stats.completed, 1u);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.slot_bytes_in_use, 0);
}

// Records what the runner reports about each forward.
class ForwardRecorder : public EngineObserver {
 public:
  void OnForward(const ForwardSample& sample) override {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back(sample);
  }
  std::vector<ForwardSample> samples() const {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<ForwardSample> samples_;
};

TEST(Engine, SameSeedSameBytesAloneOrBatchedWithOthers) {
  EngineConfig config = TinyConfig();
  auto recorder = std::make_shared<ForwardRecorder>();
  config.observer = recorder;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  ExpectSameBytesAloneAndBatched(*engine);
  const EngineStats stats = engine->Stats();
  // No step, alone or batched, asked the host to wait for the device.
  const std::vector<ForwardSample> forwards = recorder->samples();
  ASSERT_EQ(forwards.size(), stats.forwards);
  for (const ForwardSample& f : forwards) EXPECT_EQ(f.step_host_waits, 0);
}

// An explicit warm-up size runs a first block at that size and is reported; a bad one is
// refused before anything loads, naming the field.
TEST(Engine, WarmUpRunsAtTheConfiguredSizeAndReportsIt) {
  EngineConfig config = TinyConfig();
  config.warmup_width = 96;
  config.warmup_height = 64;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  const ModelInfo info = engine->Info();
  EXPECT_EQ(info.warmup_width, 96);
  EXPECT_EQ(info.warmup_height, 64);
  EXPECT_GT(info.warmup_seconds, 0);

  config.warmup_width = 0;  // without its height
  auto bad = CreateEngine(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("warmup_width"), std::string::npos)
      << bad.status();
  config.warmup_width = 50;
  bad = CreateEngine(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("warmup_width"), std::string::npos)
      << bad.status();
}

TEST(Engine, CancelFreesTheSlotAndTheQueuedSessionStarts) {
  EngineConfig config = TinyConfig();
  config.max_sessions = 1;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  auto first = std::make_shared<RecordingSink>();
  auto second = std::make_shared<RecordingSink>();
  first->congested = true;  // holds the first session after its first forward or so
  auto a = engine->Submit(Spec(161), first);
  auto b = engine->Submit(Spec(41), second);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->queue_position, 0);
  EXPECT_EQ(b->queue_position, 1);
  EXPECT_EQ(engine->Stats().queued, 1);
  engine->Cancel(a->id, absl::CancelledError("client went away"));
  ASSERT_TRUE(first->WaitDone());
  EXPECT_EQ(first->status.code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(second->WaitDone());
  EXPECT_TRUE(second->status.ok()) << second->status;
  EXPECT_EQ(engine->Stats().cancelled, 1u);
}

TEST(Engine, QueueFullIsResourceExhausted) {
  EngineConfig config = TinyConfig();
  config.max_sessions = 1;
  config.queue_size = 1;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  auto running = std::make_shared<RecordingSink>();
  running->congested = true;
  auto queued = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(Spec(), running).ok());
  auto q = engine->Submit(Spec(), queued);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->queue_position, 1);
  auto rejected = engine->Submit(Spec(), std::make_shared<RecordingSink>());
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(engine->Stats().rejected, 1u);
  engine->Cancel(q->id, absl::CancelledError("bye"));
  running->congested = false;
  ASSERT_TRUE(running->WaitDone());
  EXPECT_TRUE(running->status.ok());
}

TEST(Engine, EveryInvalidFieldIsNamed) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  struct Case {
    std::function<void(SessionSpec&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](SessionSpec& s) { s.prompt.clear(); }, "prompt"},
      {[](SessionSpec& s) { s.prompt = std::string(20000, 'a'); }, "prompt"},
      {[](SessionSpec& s) { s.prompt = "bad \xff\xfe utf-8"; }, "prompt"},
      {[](SessionSpec& s) { s.width = 70; }, "width"},
      {[](SessionSpec& s) { s.height = 4096; }, "height"},
      {[](SessionSpec& s) { s.num_frames = 80; }, "num_frames"},
      {[](SessionSpec& s) { s.num_frames = 2001; }, "num_frames"},
      {[](SessionSpec& s) { s.timesteps = {900, 950}; }, "timesteps"},
      {[](SessionSpec& s) { s.num_cached_blocks = 0; }, "num_cached_blocks"},
      {[](SessionSpec& s) { s.motion_score = 0; }, "motion_score"},
      {[](SessionSpec& s) { s.prompt_timeline = {{5, "x"}}; }, "prompt_timeline"},
      {[](SessionSpec& s) { s.encode.crf = 60; }, "crf"},
      {[](SessionSpec& s) { s.encode.preset = "ludicrous"; }, "preset"},
  };
  for (const auto& c : cases) {
    SessionSpec spec = Spec();
    c.edit(spec);
    auto r = engine->Submit(spec, std::make_shared<RecordingSink>());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.field));
  }
}

// The video before the switch block is unchanged; a switch to the same prompt (either mode)
// changes nothing at all — recache rewinds and recomputes the same state exactly.
TEST(Engine, PromptSwitchTakesEffectAtTheAcknowledgedBlock) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto run = [&](std::optional<std::pair<std::string, PromptSwitchMode>> change) {
    auto sink = std::make_shared<RecordingSink>();
    SessionSpec spec = Spec(161, 9);  // 41 latent frames: 4 blocks
    spec.interactive = true;
    auto info = engine->Submit(spec, sink);
    EXPECT_TRUE(info.ok()) << info.status();
    if (change) {
      sink->SetOnChunk([&, id = info->id, change](const VideoChunk& c) {
        if (c.block_index != 0) return;
        auto ack = Switch(*engine, id, 77, change->first, change->second);
        EXPECT_TRUE(ack.ok()) << ack.status();
      });
    }
    EXPECT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status.ok()) << sink->status;
    return sink;
  };
  auto base = run(std::nullopt);
  auto same_recache = run(std::make_pair(std::string("A red fox runs at dawn"),
                                         PromptSwitchMode::kRecache));
  EXPECT_EQ(same_recache->Video(), base->Video());
  ASSERT_EQ(same_recache->acks.size(), 1u);
  EXPECT_EQ(same_recache->acks[0].command_id, 77u);

  for (auto mode : {PromptSwitchMode::kImmediate, PromptSwitchMode::kRecache}) {
    auto switched = run(std::make_pair(std::string("a city street at night"), mode));
    ASSERT_EQ(switched->acks.size(), 1u);
    const int64_t block = switched->acks[0].effective_block;
    EXPECT_GE(block, 1);
    ASSERT_EQ(switched->chunks.size(), base->chunks.size());
    for (size_t i = 0; i < base->chunks.size(); ++i) {
      const int64_t b = base->chunks[i].block_index;
      if (b < block) {
        EXPECT_EQ(switched->ChunkDigest(i), base->ChunkDigest(i)) << "block " << b;
      } else {
        EXPECT_NE(switched->ChunkDigest(i), base->ChunkDigest(i)) << "block " << b;
      }
    }
  }
}

TEST(Engine, ExtendAndStopChangeTheLength) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(Spec(81), sink);
  ASSERT_TRUE(info.ok());
  sink->SetOnChunk([&, id = info->id](const VideoChunk& c) {
    if (c.block_index == 0) {
      auto ack = Extend(*engine, id, 1, 80);  // 20 latent frames: 2 more blocks
      EXPECT_TRUE(ack.ok()) << ack.status();
      if (ack.ok()) {
        EXPECT_EQ(ack->effective_block, 2);
      }
    }
  });
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_EQ(sink->stats.frames, 161);
  EXPECT_EQ(sink->stats.blocks, 4);

  auto stopped = std::make_shared<RecordingSink>();
  auto info2 = engine->Submit(Spec(321), stopped);  // 81 latent frames, 8 blocks
  ASSERT_TRUE(info2.ok());
  stopped->SetOnChunk([&, id = info2->id](const VideoChunk& c) {
    if (c.block_index == 0) {
      auto ack = Stop(*engine, id, 2);
      EXPECT_TRUE(ack.ok()) << ack.status();
    }
  });
  ASSERT_TRUE(stopped->WaitDone());
  ASSERT_TRUE(stopped->status.ok()) << stopped->status;
  ASSERT_EQ(stopped->acks.size(), 1u);
  const int64_t last = stopped->acks[0].effective_block;
  EXPECT_LT(last, 7);
  EXPECT_EQ(stopped->stats.blocks, last + 1);
  EXPECT_EQ(stopped->stats.frames, 41 + 40 * last);
  EXPECT_EQ(Extend(*engine, info2->id, 3, 40).status().code(), absl::StatusCode::kNotFound);
}

TEST(Engine, ACongestedReaderPausesOnlyItsOwnSession) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto slow = std::make_shared<RecordingSink>();
  slow->congested = true;
  auto fast = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(Spec(161, 1), slow).ok());
  ASSERT_TRUE(engine->Submit(Spec(161, 2), fast).ok());
  ASSERT_TRUE(fast->WaitDone());
  EXPECT_TRUE(fast->status.ok());
  EXPECT_FALSE(slow->done);
  EXPECT_LE(slow->NumProgress(), 1u);  // at most the forward that was already planned
  slow->congested = false;
  ASSERT_TRUE(slow->WaitDone());
  EXPECT_TRUE(slow->status.ok()) << slow->status;
  EXPECT_EQ(slow->stats.frames, 161);
}

TEST(Engine, DrainCancelsWhatOutlivesTheTimeoutAndRefusesNewSessions) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  auto stuck = std::make_shared<RecordingSink>();
  stuck->congested = true;
  ASSERT_TRUE(engine->Submit(Spec(161), stuck).ok());
  engine->Drain(std::chrono::milliseconds(300));
  ASSERT_TRUE(stuck->WaitDone());
  EXPECT_EQ(stuck->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(engine->Stats().draining);
  auto late = engine->Submit(Spec(), std::make_shared<RecordingSink>());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
}

TEST(Engine, InfoDescribesTheModel) {
  auto engine = MakeEngine();
  ASSERT_TRUE(engine);
  const ModelInfo info = engine->Info();
  EXPECT_EQ(info.transformer_params, 235584);
  EXPECT_EQ(info.text_encoder_params, 103728);
  EXPECT_EQ(info.vae_params, 524091);
  EXPECT_EQ(info.device, "cpu");
  // Every component's dtype as it runs: fp32 on CPU; TF32 is a CUDA matter.
  EXPECT_EQ(info.transformer_dtype, "float32");
  EXPECT_EQ(info.text_encoder_dtype, "float32");
  EXPECT_EQ(info.vae_dtype, "float32");
  EXPECT_EQ(info.dtype, info.transformer_dtype);
  EXPECT_FALSE(info.tf32);
  // CPU: the automatic warm-up is the smallest size (a 480p block takes minutes there).
  EXPECT_EQ(info.warmup_width, 32);
  EXPECT_EQ(info.warmup_height, 32);
  EXPECT_GT(info.warmup_seconds, 0);
  EXPECT_EQ(info.fps, 16);
  EXPECT_TRUE(engine->Healthy());
  EXPECT_EQ(engine->Stats().admissible, 4);
}

// --vae_dtype bf16: ModelInfo says so, sessions decode and stream, and a session's slot is
// smaller by half the VAE cache.
TEST(Engine, ABf16VaeStreamsAndHalvesItsCacheInTheSlot) {
  EngineConfig fp32_config = TinyConfig();
  EngineConfig bf16_config = TinyConfig();
  bf16_config.vae_dtype = VaeDtype::kBFloat16;
  int64_t slot_bytes[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    auto engine = MakeEngine(i == 0 ? fp32_config : bf16_config);
    ASSERT_TRUE(engine);
    EXPECT_EQ(engine->Info().vae_dtype, i == 0 ? "float32" : "bfloat16");
    EXPECT_EQ(engine->Info().transformer_dtype, "float32") << "the DiT is not the VAE";
    auto sink = std::make_shared<RecordingSink>();
    sink->congested = true;  // holds the session (and its slot) after its first chunk
    ASSERT_TRUE(engine->Submit(Spec(81), sink).ok());
    for (int k = 0; k < 3000 && engine->Stats().slot_bytes_in_use == 0; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    slot_bytes[i] = engine->Stats().slot_bytes_in_use;
    sink->congested = false;
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status.ok()) << sink->status;
    EXPECT_EQ(sink->stats.frames, 81);
  }
  EXPECT_GT(slot_bytes[1], 0);
  EXPECT_LT(slot_bytes[1], slot_bytes[0]);
  std::cout << "slot bytes at 64x64: fp32 VAE " << slot_bytes[0] << ", bf16 VAE " << slot_bytes[1]
            << "\n";
}

}  // namespace
}  // namespace longsana::engine
