// Live (open-ended) sessions on the real engine and the tiny checkpoint: the video grows
// block by block until a stop or the live limit, with constant session memory; a switch
// never needs an extend.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "tests/common/temp_dir.h"
#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {
namespace {

using longsana::testing::RecordingSink;
using ::testing::HasSubstr;

SessionSpec LiveSpec() {
  SessionSpec s = Spec();
  s.width = 32;
  s.height = 32;
  s.live = true;
  s.interactive = true;
  return s;
}

// Resident set size of this process, bytes.
int64_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

TEST(LiveSession, GrowsUntilStoppedAndASwitchNeverNeedsAnExtend) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(LiveSpec(), sink);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->live);
  EXPECT_EQ(info->num_blocks, 2);  // what is planned at first

  // A switch after each of the first chunks is accepted (there is always a block not yet
  // started) and takes effect within the runner's bound on running ahead of delivery: the
  // two blocks the media pipeline may hold plus the one in progress.
  uint64_t command = 0;
  for (size_t block = 0; block < 6; ++block) {
    ASSERT_TRUE(sink->WaitChunks(block + 2)) << "block " << block;  // the init segment first
    auto ack = Switch(*engine, info->id, ++command, "a blue kite, take " + std::to_string(block));
    ASSERT_TRUE(ack.ok()) << ack.status();
    ASSERT_TRUE(ack->status.ok()) << "block " << block << ": " << ack->status;
    const auto delivered = static_cast<int64_t>(sink->NumChunks()) - 2;  // latest block sent
    EXPECT_LE(ack->effective_block, delivered + 4) << "block " << block;
  }
  auto extend = Extend(*engine, info->id, ++command, 40);  // refusals come back as the status
  EXPECT_EQ(extend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(extend.status().message(), HasSubstr("live"));

  auto stop = Stop(*engine, info->id, ++command);
  ASSERT_TRUE(stop.ok() && stop->status.ok()) << stop.status();
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_EQ(sink->stats.blocks, stop->effective_block + 1);
  EXPECT_EQ(sink->stats.frames, stop->num_frames);
  EXPECT_TRUE(sink->stats.detail.empty());
  EXPECT_EQ(sink->chunks.size(), static_cast<size_t>(sink->stats.blocks) + 1);
  EXPECT_GE(sink->stats.blocks, 6);
}

TEST(LiveSession, CompletesAtTheLiveLimitWithConstantSlotMemory) {
  EngineConfig config = TinyConfig();
  config.max_live_seconds = std::chrono::seconds(30);  // 481 frames: 121 latent frames
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Info().max_live_frames, 481);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(LiveSpec(), sink);
  ASSERT_TRUE(info.ok()) << info.status();

  ASSERT_TRUE(sink->WaitChunks(4));  // init + blocks 0..2
  const int64_t slot_bytes_early = engine->Stats().slot_bytes_in_use;
  const int64_t rss_early = RssBytes();
  ASSERT_TRUE(sink->WaitChunks(12));  // block 10
  EXPECT_EQ(engine->Stats().slot_bytes_in_use, slot_bytes_early);
  const int64_t rss_late = RssBytes();
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_EQ(sink->stats.frames, 481);
  EXPECT_EQ(sink->stats.blocks, 13);  // 121 latent frames: 12 blocks of 10 and one of 1
  EXPECT_THAT(sink->stats.detail, HasSubstr("live limit reached"));
  std::printf("live session RSS at block 2: %.1f MiB, at block 10: %.1f MiB\n",
              rss_early / 1048576.0, rss_late / 1048576.0);
  // Flat within allocator noise: no per-block growth of the session's state.
  EXPECT_LT(rss_late - rss_early, int64_t{64} << 20);

  // No command after the limit: the video has ended.
  auto late = Switch(*engine, info->id, 1, "too late");
  EXPECT_FALSE(late.ok() && late->status.ok());
}

// The tiny checkpoint with a longer RoPE table (no weight depends on it): room for a video
// of 4096 latent frames, 409 blocks. Weights are linked, not copied.
std::string LongRopeModel(const longsana::testing::TempDir& dir) {
  namespace fs = std::filesystem;
  const fs::path from = longsana::testing::TinyModelDir();
  for (const auto& entry : fs::recursive_directory_iterator(from)) {
    const fs::path to = fs::path(dir.path()) / fs::relative(entry.path(), from);
    if (entry.is_directory()) {
      fs::create_directories(to);
    } else if (entry.path().filename() == "config.json" &&
               entry.path().parent_path().filename() == "transformer") {
      std::string config = longsana::testing::ReadFile(entry.path().string());
      const std::string key = "\"rope_max_seq_len\": 1024";
      const size_t at = config.find(key);
      EXPECT_NE(at, std::string::npos);
      if (at != std::string::npos) config.replace(at, key.size(), "\"rope_max_seq_len\": 4096");
      longsana::testing::WriteFile(to.string(), config);
    } else {
      fs::create_symlink(fs::absolute(entry.path()), to);
    }
  }
  return dir.path();
}

TEST(LiveSession, Runs300BlocksWithFlatMemoryAndStopsWithCompleted) {
  longsana::testing::TempDir dir;
  EngineConfig config = TinyConfig();
  config.model_dir = LongRopeModel(dir);
  config.max_live_seconds = std::chrono::hours(1);  // the RoPE table (1023.8 s) limits
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  ASSERT_GE(engine->Info().max_live_frames, 1 + 4 * 3009);
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine->Submit(LiveSpec(), sink);
  ASSERT_TRUE(info.ok()) << info.status();

  ASSERT_TRUE(sink->WaitChunks(4, std::chrono::seconds(300)));  // init + blocks 0..2
  const EngineStats early = engine->Stats();
  const int64_t rss_early = RssBytes();
  ASSERT_TRUE(sink->WaitChunks(301, std::chrono::seconds(900)));  // block 299: 300 blocks
  const EngineStats late = engine->Stats();
  const int64_t rss_late = RssBytes();
  EXPECT_EQ(late.slot_bytes_in_use, early.slot_bytes_in_use);
  // On CUDA the caching allocator's bytes; -1 (not tracked) on CPU, where RSS stands in.
  EXPECT_EQ(late.device_memory_allocated_bytes, early.device_memory_allocated_bytes);
  std::printf("live session RSS at block 2: %.1f MiB, at block 300: %.1f MiB\n",
              rss_early / 1048576.0, rss_late / 1048576.0);
  EXPECT_LT(rss_late - rss_early, int64_t{64} << 20);

  auto stop = Stop(*engine, info->id, 1);
  ASSERT_TRUE(stop.ok() && stop->status.ok()) << stop.status();
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status.ok()) << sink->status;
  EXPECT_GE(sink->stats.blocks, 300);
  EXPECT_EQ(sink->stats.blocks, stop->effective_block + 1);
  EXPECT_TRUE(sink->stats.detail.empty());
}

TEST(LiveSession, TheLiveLimitNeverPassesTheModelsRopeCoverage) {
  EngineConfig config = TinyConfig();
  config.max_live_seconds = std::chrono::hours(2);
  auto engine = MakeEngine(config);
  ASSERT_NE(engine, nullptr);
  // The tiny checkpoint's RoPE covers 1024 latent frames: 1 + 4 * 1023 video frames.
  EXPECT_EQ(engine->Info().max_live_frames, 1 + 4 * 1023);
}

}  // namespace
}  // namespace longsana::engine
