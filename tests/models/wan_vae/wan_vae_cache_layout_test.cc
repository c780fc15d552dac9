// The decoder cache layout is derived from config and resolution alone; its size at the
// production resolution is pinned by a hand count of the decoder's causal convs.
#include "engine/models/wan_vae/wan_vae_cache_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TestdataPath;
using ::longsana::testing::TinyModelDir;

WanVaeConfig RealConfig() {
  auto config = WanVaeConfig::FromFile(TestdataPath("longsana-2b-configs/vae/config.json"));
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TEST(WanVaeCacheLayout, RealConfigAt832x480) {
  auto layout = ComputeWanVaeCacheLayout(RealConfig(), 60, 104);
  ASSERT_TRUE(layout.ok()) << layout.status();
  // conv_in + 2 mid resnets x 2 + 4 up blocks x 3 resnets x 2 + 2 time_convs + conv_out.
  ASSERT_EQ(layout->slots.size(), 32u);
  EXPECT_EQ(layout->slots.front().conv, "decoder.conv_in");
  EXPECT_EQ(layout->slots.front().shape, (std::vector<int64_t>{1, 16, 2, 60, 104}));
  EXPECT_EQ(layout->slots[1].conv, "decoder.mid_block.resnets.0.conv1");
  EXPECT_EQ(layout->slots.back().conv, "decoder.conv_out");
  EXPECT_EQ(layout->slots.back().shape, (std::vector<int64_t>{1, 96, 2, 480, 832}));
  int num_time_convs = 0;
  for (const auto& s : layout->slots) {
    if (!s.time_conv) continue;
    ++num_time_convs;
    EXPECT_THAT(s.conv, ::testing::EndsWith(".upsamplers.0.time_conv"));
  }
  EXPECT_EQ(num_time_convs, 2);
  // up_blocks.1.resnets.0 takes the 192 channels of the first upsampler at 120x208.
  auto it = std::find_if(layout->slots.begin(), layout->slots.end(), [](const auto& s) {
    return s.conv == "decoder.up_blocks.1.resnets.0.conv1";
  });
  ASSERT_NE(it, layout->slots.end());
  EXPECT_EQ(it->shape, (std::vector<int64_t>{1, 192, 2, 120, 208}));

  // Channels x pixels per resolution, counted by hand from model.md §8.3:
  //   60x104:  conv_in 16 + mid 4x384 + up0 6x384 + up0 time_conv 384 = 4240
  //   120x208: up1 192 + 5x384 + up1 time_conv 384                     = 2496
  //   240x416: up2 6x192                                                 = 1152
  //   480x832: up3 6x96 + conv_out 96                                    = 672
  const int64_t channel_pixels = 4240 * 6240 + 2496 * 24960 + 1152 * 99840 + int64_t{672} * 399360;
  EXPECT_EQ(layout->numel, channel_pixels * 2);  // every slot is a multiple of 16 elements
  EXPECT_EQ(layout->bytes(4), int64_t{3'777'146'880});
  EXPECT_EQ(layout->bytes(2), int64_t{1'888'573'440});
}

TEST(WanVaeCacheLayout, SlotsAreAlignedAndDisjoint) {
  auto config = WanVaeConfig::FromFile(TinyModelDir() + "/vae/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto layout = ComputeWanVaeCacheLayout(*config, 3, 5);  // odd sizes force padding
  ASSERT_TRUE(layout.ok()) << layout.status();
  int64_t end = 0;
  for (const auto& s : layout->slots) {
    EXPECT_EQ(s.offset % kWanVaeCacheAlignElements, 0) << s.conv;
    EXPECT_GE(s.offset, end) << s.conv;
    end = s.offset + s.numel();
  }
  EXPECT_GE(layout->numel, end);
  EXPECT_LT(layout->numel - end, kWanVaeCacheAlignElements);
}

TEST(WanVaeCacheLayout, RejectsBadResolution) {
  const WanVaeConfig config = RealConfig();
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{0, 10}, {-1, 10}, {2000, 10}}) {
    auto layout = ComputeWanVaeCacheLayout(config, h, w);
    EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(layout.status().message()), ::testing::HasSubstr("latent_h"));
  }
  auto layout = ComputeWanVaeCacheLayout(config, 10, 0);
  EXPECT_THAT(std::string(layout.status().message()), ::testing::HasSubstr("latent_w"));
}

}  // namespace
}  // namespace longsana::engine
