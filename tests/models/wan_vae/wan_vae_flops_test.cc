// The VAE decoder's FLOP count walks the same convolutions as the checkpoint's parameter
// table (names and weight shapes agree), writes where the decoder writes (latent resolution
// at conv_in, 8x at conv_out; 1 frame for latent frame 0, 4 for later ones), and the real
// Wan2.1 decoder's counts at 832x480 are pinned.
#include "engine/models/wan_vae/wan_vae_flops.h"

#include <gtest/gtest.h>

#include <map>

#include "engine/models/wan_vae/wan_vae_params.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TestdataPath;

WanVaeConfig Config(const std::string& relative) {
  auto config = WanVaeConfig::FromFile(TestdataPath(relative));
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TEST(WanVaeFlops, EveryWeightedOpMatchesTheParameterTableAndItsResolution) {
  for (const char* path :
       {"tiny-longsana/vae/config.json", "longsana-2b-configs/vae/config.json"}) {
    const WanVaeConfig c = Config(path);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const ParamSpec& p : WanVaeDecoderParamSpecs(c)) shapes[p.name] = p.shape;
    for (bool first : {true, false}) {
      auto f = CountWanVaeDecodeFlops(c, 60, 104, first);
      ASSERT_TRUE(f.ok()) << f.status();
      size_t weighted = 0;
      double sum = 0;
      for (const WanVaeOpFlops& op : f->ops) {
        sum += op.flops;
        if (op.weight_shape.empty()) continue;  // the attention's q k^T and p v
        ++weighted;
        auto it = shapes.find(op.op + ".weight");
        ASSERT_NE(it, shapes.end()) << op.op << " is not in the checkpoint";
        EXPECT_EQ(it->second, op.weight_shape) << op.op;
      }
      EXPECT_DOUBLE_EQ(sum, f->total);
      // Every weight of the table but the norms' gammas, once; time_convs skipped on frame 0.
      size_t expected = 0, time_convs = 0;
      for (const auto& [name, shape] : shapes) {
        if (shape.size() < 2 || name.ends_with(".gamma")) continue;
        ++expected;
        if (name.find("time_conv") != std::string::npos) ++time_convs;
      }
      EXPECT_EQ(weighted, first ? expected - time_convs : expected) << path;
      const WanVaeOpFlops& in = f->ops[1];
      EXPECT_EQ(in.op, "decoder.conv_in");
      EXPECT_EQ(in.output_positions, 60 * 104);
      const WanVaeOpFlops& out = f->ops.back();
      EXPECT_EQ(out.op, "decoder.conv_out");
      EXPECT_EQ(out.output_positions, (first ? 1 : 4) * 480 * 832) << path;
    }
  }
}

TEST(WanVaeFlops, TheRealDecoderAt480p) {
  const WanVaeConfig c = Config("longsana-2b-configs/vae/config.json");
  auto first = CountWanVaeDecodeFlops(c, 60, 104, /*first_frame=*/true);
  auto later = CountWanVaeDecodeFlops(c, 60, 104, /*first_frame=*/false);
  ASSERT_TRUE(first.ok() && later.ok());
  // A later latent frame writes 4 video frames through the last stages: about 4x frame 0.
  EXPECT_GT(later->total / first->total, 3.0);
  EXPECT_LT(later->total / first->total, 4.0);
  // conv_out alone, 96 -> 3 at 480x832 x 4 frames: 2 x 3 x 96 x 27 x 4 x 399,360.
  EXPECT_DOUBLE_EQ(later->ops.back().flops, 2.0 * 3 * 96 * 27 * 4 * 480 * 832);
  std::printf("Wan2.1 decoder at 832x480: latent frame 0 %.3g FLOPs, later %.3g FLOPs\n",
              first->total, later->total);
}

TEST(WanVaeFlops, RejectsABadResolutionNamingTheField) {
  auto f = CountWanVaeDecodeFlops(Config("tiny-longsana/vae/config.json"), 0, 4, false);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("latent_h"), std::string::npos);
}

}  // namespace
}  // namespace longsana::engine
