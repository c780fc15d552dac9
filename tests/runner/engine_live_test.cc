// Live (open-ended) sessions on the real engine and the tiny checkpoint: the video grows
// block by block until a stop or the live limit, with constant session memory; a switch
// never needs an extend.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

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
