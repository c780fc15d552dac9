// One fragment per latent frame (EncodeOptions::fragment_per_latent_frame) on the real
// engine: the same frames as one fragment per block, keyframes only at block starts, and the
// first fragment is the first latent frame's single video frame.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "tests/media/media_test_util.h"
#include "tests/runner/engine_test_util.h"
#include "tests/runner/recording_sink.h"

namespace longsana::engine {
namespace {

using longsana::testing::RecordingSink;

std::shared_ptr<RecordingSink> Generate(Engine& engine, bool per_latent_frame) {
  SessionSpec spec = Spec(81, 11);  // 21 latent frames: blocks of 11 and 10
  spec.width = 32;
  spec.height = 32;
  spec.encode.fragment_per_latent_frame = per_latent_frame;
  auto sink = std::make_shared<RecordingSink>();
  auto info = engine.Submit(spec, sink);
  EXPECT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status.ok()) << sink->status;
  return sink;
}

std::string Concatenated(RecordingSink& sink) {
  std::string all;
  for (const VideoChunk& c : sink.chunks) all += c.bytes;
  return all;
}

TEST(LatentFrameFragments, SameFramesKeyframesAtBlockStartsFirstFragmentOneFrame) {
  auto engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  auto per_block = Generate(*engine, false);
  auto per_latent = Generate(*engine, true);

  ASSERT_EQ(per_block->chunks.size(), 1u + 2);
  ASSERT_EQ(per_latent->chunks.size(), 1u + 21);  // the init segment + one per latent frame
  int64_t frames = 0;
  for (size_t i = 1; i < per_latent->chunks.size(); ++i) {
    const VideoChunk& c = per_latent->chunks[i];
    EXPECT_EQ(c.sequence, static_cast<int64_t>(i));
    EXPECT_EQ(c.first_frame, frames);
    EXPECT_EQ(c.num_frames, i == 1 ? 1 : 4) << i;
    const int64_t latent = static_cast<int64_t>(i) - 1;
    EXPECT_EQ(c.block_index, latent < 11 ? 0 : 1) << i;
    EXPECT_EQ(c.keyframe, latent == 0 || latent == 11) << i;
    EXPECT_EQ(c.last_in_block, latent == 10 || latent == 20) << i;
    frames += c.num_frames;
  }
  EXPECT_EQ(frames, 81);
  EXPECT_EQ(per_latent->stats.frames, 81);
  EXPECT_EQ(per_latent->stats.blocks, 2);
  EXPECT_EQ(per_latent->stats.block_timings.size(), 2u);

  auto a = longsana::testing::DemuxAndDecode(Concatenated(*per_block));
  auto b = longsana::testing::DemuxAndDecode(Concatenated(*per_latent));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rgb_frames.size(), 81u);
  EXPECT_EQ(b->rgb_frames, a->rgb_frames);  // decoding per latent frame changes nothing
  std::printf("time to first chunk: %.4f s per block, %.4f s per latent frame (this run)\n",
              per_block->stats.time_to_first_chunk_seconds,
              per_latent->stats.time_to_first_chunk_seconds);
}

}  // namespace
}  // namespace longsana::engine
