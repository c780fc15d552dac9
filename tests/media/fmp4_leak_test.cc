// Built against the AddressSanitizer + UBSan copy of the media library (longsana_media_asan)
// and run with detect_leaks=1: LeakSanitizer fails the binary at exit if any FFmpeg or x264
// allocation made through the encoder is not freed, on the success path (a 100-block stream)
// and on every early-return path we can reach from outside.
#include <memory>
#include <numeric>
#include <vector>

#include "engine/media/fmp4_encoder.h"
#include "engine/media/test_pattern.h"
#include "gtest/gtest.h"
#include "tests/media/media_test_util.h"

namespace longsana::testing {
namespace {

using engine::EncoderSettings;
using engine::Fmp4Encoder;

TEST(Fmp4EncoderLeakTest, HundredBlockStream) {
  EncoderSettings settings;
  settings.width = 64;
  settings.height = 48;
  std::vector<int> blocks(100, 8);
  blocks[0] = 9;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, blocks);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ(stream->fragments.size(), 100u);
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->rgb_frames.size(),
            static_cast<size_t>(std::accumulate(blocks.begin(), blocks.end(), 0)));
}

TEST(Fmp4EncoderLeakTest, MultiThreadedHundredBlockStream) {
  EncoderSettings settings;
  settings.width = 160;
  settings.height = 96;
  settings.threads = 2;
  settings.bitrate_bps = 200'000;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, std::vector<int>(100, 2));
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ(stream->fragments.back().first_frame, 198);
}

TEST(Fmp4EncoderLeakTest, DestroyedMidStreamAndWithoutBlocks) {
  EncoderSettings settings;
  settings.width = 32;
  settings.height = 32;
  {
    auto encoder = Fmp4Encoder::Create(settings);
    ASSERT_TRUE(encoder.ok()) << encoder.status();
  }
  auto encoder = Fmp4Encoder::Create(settings);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::vector<uint8_t> block = engine::RenderTestPatternBlock(32, 32, 0, 3);
  ASSERT_TRUE((*encoder)->EncodeBlock(block, 3).ok());
  // Argument errors in between, then the encoder is dropped with no trailer written.
  EXPECT_FALSE((*encoder)->EncodeBlock(block, 4).ok());
  EXPECT_FALSE((*encoder)->EncodeBlock(block, 0).ok());
  ASSERT_TRUE((*encoder)->EncodeBlock(block, 3).ok());
}

TEST(Fmp4EncoderLeakTest, InvalidSettingsAndUndecodableInput) {
  EncoderSettings settings;
  settings.width = 33;
  settings.height = 32;
  EXPECT_FALSE(Fmp4Encoder::Create(settings).ok());
  // The demux helper's error paths free what they allocated too.
  EXPECT_FALSE(DemuxAndDecode("definitely not an mp4 file").ok());
  EXPECT_FALSE(DemuxAndDecode("").ok());
}

}  // namespace
}  // namespace longsana::testing
