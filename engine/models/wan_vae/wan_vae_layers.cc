#include "engine/models/wan_vae/wan_vae_layers.h"

#include "engine/common/str_util.h"

namespace longsana::engine {

std::vector<WanVaeLayer> WanVaeDecoderLayers(const WanVaeConfig& c) {
  using Kind = WanVaeLayer::Kind;
  std::vector<WanVaeLayer> layers;
  int64_t scale = 1;
  auto add = [&](Kind kind, std::string prefix, int64_t in, int64_t out) {
    layers.push_back({kind, std::move(prefix), in, out, scale});
  };
  const std::vector<int64_t> dims = c.decoder_dims();
  const std::vector<bool> up_t = c.temperal_upsample();
  add(Kind::kPostQuantConv, "post_quant_conv", c.z_dim, c.z_dim);
  add(Kind::kConvIn, "decoder.conv_in", c.z_dim, dims[0]);
  add(Kind::kResidual, "decoder.mid_block.resnets.0", dims[0], dims[0]);
  add(Kind::kAttention, "decoder.mid_block.attentions.0", dims[0], dims[0]);
  add(Kind::kResidual, "decoder.mid_block.resnets.1", dims[0], dims[0]);
  int64_t out_dim = dims[0];
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    int64_t in_dim = i > 0 ? dims[i] / 2 : dims[i];  // every Resample halves the channels
    out_dim = dims[i + 1];
    const std::string p = StrCat("decoder.up_blocks.", i);
    for (int64_t j = 0; j <= c.num_res_blocks; ++j) {
      add(Kind::kResidual, StrCat(p, ".resnets.", j), in_dim, out_dim);
      in_dim = out_dim;
    }
    if (i + 1 < c.dim_mult.size()) {
      const std::string u = p + ".upsamplers.0";
      if (up_t[i]) add(Kind::kTimeConv, u + ".time_conv", out_dim, 2 * out_dim);
      scale *= 2;
      add(Kind::kResample, u + ".resample.1", out_dim, out_dim / 2);
    }
  }
  add(Kind::kNormOut, "decoder.norm_out", out_dim, out_dim);
  add(Kind::kConvOut, "decoder.conv_out", out_dim, 3);
  return layers;
}

}  // namespace longsana::engine
