#include "engine/models/longsana_dit/dit_params.h"

#include "engine/common/str_util.h"

namespace longsana::engine {

ParamSpecs DitParamSpecs(const DitConfig& c) {
  const int64_t d = c.hidden_size();
  const int64_t f = c.ffn_hidden();
  const int64_t cap = c.caption_channels;
  const auto& p = c.patch_size;
  ParamSpecs s;
  auto add = [&s](std::string name, std::vector<int64_t> shape) {
    s.push_back({std::move(name), std::move(shape)});
  };
  auto linear = [&add](const std::string& name, int64_t out, int64_t in, bool bias) {
    add(name + ".weight", {out, in});
    if (bias) add(name + ".bias", {out});
  };

  add("patch_embedding.weight", {d, c.in_channels, p[0], p[1], p[2]});
  add("patch_embedding.bias", {d});
  linear("time_embed.emb.timestep_embedder.linear_1", d, DitConfig::kTimestepChannels, true);
  linear("time_embed.emb.timestep_embedder.linear_2", d, d, true);
  linear("time_embed.linear", 6 * d, d, true);
  linear("caption_projection.linear_1", d, cap, true);
  linear("caption_projection.linear_2", d, d, true);
  add("caption_norm.weight", {d});

  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = StrCat("transformer_blocks.", i, ".");
    add(b + "scale_shift_table", {6, d});
    linear(b + "attn1.to_q", d, d, false);
    linear(b + "attn1.to_k", d, d, false);
    linear(b + "attn1.to_v", d, d, false);
    add(b + "attn1.norm_q.weight", {d});
    add(b + "attn1.norm_k.weight", {d});
    linear(b + "attn1.to_out.0", d, d, true);
    linear(b + "attn2.to_q", d, d, true);
    linear(b + "attn2.to_k", d, c.cross_attention_dim, true);
    linear(b + "attn2.to_v", d, c.cross_attention_dim, true);
    add(b + "attn2.norm_q.weight", {d});
    add(b + "attn2.norm_k.weight", {d});
    linear(b + "attn2.to_out.0", d, d, true);
    add(b + "ff.conv_inverted.weight", {2 * f, d, 1, 1});
    add(b + "ff.conv_inverted.bias", {2 * f});
    add(b + "ff.conv_depth.weight", {2 * f, 1, 3, 3});
    add(b + "ff.conv_depth.bias", {2 * f});
    add(b + "ff.conv_point.weight", {d, f, 1, 1});
    add(b + "ff.conv_temp.weight", {d, d, 3, 1});
  }

  linear("proj_out", c.patch_volume() * c.out_channels, d, true);
  add("scale_shift_table", {2, d});
  return s;
}

}  // namespace longsana::engine
