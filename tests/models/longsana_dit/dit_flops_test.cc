// The DiT's FLOP count from the config agrees with one derived independently from the
// checkpoint's parameter table (every weight matrix times the tokens it is applied to) plus
// the token-token attention terms, on the tiny and the real 2B configs; and the 2B numbers
// at 832x480 are pinned.
#include "engine/models/longsana_dit/dit_flops.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/models/longsana_dit/dit_params.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TestdataPath;

DitConfig Config(const std::string& relative) {
  auto config = DitConfig::FromFile(TestdataPath(relative));
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// 2 x every weight's elements x the rows it multiplies: caption rows for the caption
// projection and the cross-attention keys/values, one row for the timestep MLP, every video
// token for the rest; vectors (biases, norms) and the modulation tables do no matmul.
double FromParameterTable(const DitConfig& c, double tokens, double caption) {
  double flops = 0;
  for (const ParamSpec& p : DitParamSpecs(c)) {
    if (p.shape.size() < 2 || p.name.find("scale_shift_table") != std::string::npos) continue;
    const bool on_caption = p.name.starts_with("caption_projection.") ||
                            p.name.find("attn2.to_k.") != std::string::npos ||
                            p.name.find("attn2.to_v.") != std::string::npos;
    const double rows = on_caption ? caption : p.name.starts_with("time_embed.") ? 1 : tokens;
    flops += 2.0 * static_cast<double>(p.numel()) * rows;
  }
  const double layers = static_cast<double>(c.num_layers);
  const double d = static_cast<double>(c.num_attention_heads * c.attention_head_dim);
  const double cross =
      static_cast<double>(c.num_cross_attention_heads * c.cross_attention_head_dim);
  // Linear attention: S (d x d per head) from the tokens, S q per token, the normaliser.
  flops += layers * (4 * tokens * d * static_cast<double>(c.attention_head_dim) + 2 * tokens * d);
  // Cross-attention: q k^T and p v over the caption.
  flops += layers * 4 * tokens * caption * cross;
  return flops;
}

TEST(DitFlops, TheConfigCountEqualsTheParameterTableCount) {
  for (const char* config :
       {"tiny-longsana/transformer/config.json", "longsana-2b-configs/transformer/config.json"}) {
    const DitConfig c = Config(config);
    for (auto [frames, lh, lw, caption] :
         {std::tuple{10, 60, 104, 300}, std::tuple{11, 8, 12, 24}, std::tuple{3, 4, 6, 1}}) {
      const double tokens = frames * (lh / 2.0) * (lw / 2.0);
      const DitFlops f = CountDitForwardFlops(c, frames, lh, lw, caption);
      EXPECT_DOUBLE_EQ(f.total(), FromParameterTable(c, tokens, caption))
          << config << " at " << frames << "x" << lh << "x" << lw;
    }
  }
}

TEST(DitFlops, TheRealModelAt480pIsAbout58TflopPerForward) {
  const DitFlops f =
      CountDitForwardFlops(Config("longsana-2b-configs/transformer/config.json"), 10, 60, 104, 300);
  // 15,600 tokens: ~2 x 2.06e9 parameters x tokens, plus attention (model.md §7.4).
  EXPECT_NEAR(f.total(), 5.77e13, 0.01e13);
  EXPECT_GT(f.ffn, f.self_attn);               // the GLU FFN is the largest part
  EXPECT_LT(f.linear_attn, 0.01 * f.total());  // linear attention is cheap
  // Tokens dominate: the first block's 11 frames cost 10% more.
  EXPECT_NEAR(
      CountDitForwardFlops(Config("longsana-2b-configs/transformer/config.json"), 11, 60, 104, 300)
              .total() /
          f.total(),
      1.1, 0.001);
}

}  // namespace
}  // namespace longsana::engine
