// The playback clock and the pacing rule (engine/scheduler/pacing.h), on a synthetic clock.
#include "engine/scheduler/pacing.h"

#include <gtest/gtest.h>

#include <cmath>

namespace longsana::engine {
namespace {

using namespace std::chrono_literals;
using Time = PlaybackClock::Clock::time_point;

const Time t0 = Time{} + 1000s;

TEST(PlaybackClock, StartsAtTheFirstChunkAndRunsInRealTime) {
  PlaybackClock c;
  EXPECT_FALSE(c.started());
  EXPECT_EQ(c.Position(t0), 0);
  EXPECT_EQ(c.Position(t0 + 10s), 0);  // nothing delivered: nothing played
  c.Delivered(t0, 2.5);
  EXPECT_TRUE(c.started());
  EXPECT_DOUBLE_EQ(c.Position(t0 + 1s), 1.0);
  c.Delivered(t0 + 2s, 5.0);  // the next block arrives while the first plays
  EXPECT_DOUBLE_EQ(c.Position(t0 + 3s), 3.0);
  EXPECT_DOUBLE_EQ(c.delivered_seconds(), 5.0);
}

TEST(PlaybackClock, NeverPlaysPastWhatWasDeliveredAndResumesWhereItWaited) {
  PlaybackClock c;
  c.Delivered(t0, 2.5);
  EXPECT_DOUBLE_EQ(c.Position(t0 + 4s), 2.5);  // waiting for block 1
  c.Delivered(t0 + 6s, 5.0);                   // it arrives 3.5 s late
  EXPECT_DOUBLE_EQ(c.Position(t0 + 6s), 2.5);  // resumes from where it stopped
  EXPECT_DOUBLE_EQ(c.Position(t0 + 7s), 3.5);
}

TEST(PlaybackClock, ReportsReanchorAndPause) {
  PlaybackClock c;
  c.Delivered(t0, 10);
  c.Report(t0 + 1s, 0.25, /*paused=*/false);  // the player started late
  EXPECT_DOUBLE_EQ(c.Position(t0 + 2s), 1.25);
  c.Report(t0 + 3s, 2.0, /*paused=*/true);
  EXPECT_TRUE(c.paused());
  EXPECT_DOUBLE_EQ(c.Position(t0 + 30s), 2.0);
  c.Report(t0 + 31s, 2.0, /*paused=*/false);
  EXPECT_DOUBLE_EQ(c.Position(t0 + 32s), 3.0);
  c.Report(t0 + 33s, 99.0, false);  // clamped to what was delivered
  EXPECT_DOUBLE_EQ(c.Position(t0 + 33s), 10.0);
  c.Report(t0 + 34s, -5.0, false);
  EXPECT_DOUBLE_EQ(c.Position(t0 + 34s), 0.0);
}

TEST(Pacing, MayStartBlockWithinTheLookahead) {
  // Blocks of 2.5 s, lookahead one block: block b may start once the viewer reached b - 1.
  EXPECT_TRUE(MayStartBlock(0.0, 0.0, 2.5));
  EXPECT_TRUE(MayStartBlock(2.5, 0.0, 2.5));
  EXPECT_FALSE(MayStartBlock(5.0, 0.0, 2.5));
  EXPECT_FALSE(MayStartBlock(5.0, 2.49, 2.5));
  EXPECT_TRUE(MayStartBlock(5.0, 2.5, 2.5));
  EXPECT_TRUE(MayStartBlock(1e6, 0.0, -1));  // as fast as possible
}

TEST(Pacing, SecondsUntilDue) {
  PlaybackClock c;
  c.Delivered(t0, 5.0);
  EXPECT_DOUBLE_EQ(SecondsUntilDue(c, 2.5, t0 + 1s), 1.5);
  EXPECT_DOUBLE_EQ(SecondsUntilDue(c, 2.5, t0 + 3s), 0.0);  // overdue
  c.Report(t0 + 1s, 1.0, /*paused=*/true);
  EXPECT_TRUE(std::isinf(SecondsUntilDue(c, 2.5, t0 + 100s)));
}

}  // namespace
}  // namespace longsana::engine
