#include "engine/models/wan_vae/wan_vae_cache_layout.h"

#include "absl/status/status.h"
#include "engine/common/str_util.h"

namespace longsana::engine {

int64_t WanVaeCacheSlot::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<WanVaeCacheLayout> ComputeWanVaeCacheLayout(const WanVaeConfig& config,
                                                           int64_t latent_h, int64_t latent_w) {
  if (latent_h < 1 || latent_h > kWanVaeMaxLatentSide) {
    return absl::InvalidArgumentError(
        StrCat("latent_h: must be in [1, ", kWanVaeMaxLatentSide, "], got ", latent_h));
  }
  if (latent_w < 1 || latent_w > kWanVaeMaxLatentSide) {
    return absl::InvalidArgumentError(
        StrCat("latent_w: must be in [1, ", kWanVaeMaxLatentSide, "], got ", latent_w));
  }
  WanVaeCacheLayout layout;
  layout.latent_h = latent_h;
  layout.latent_w = latent_w;
  int64_t h = latent_h, w = latent_w;
  auto add = [&](std::string conv, int64_t channels, bool time_conv) {
    WanVaeCacheSlot slot;
    slot.conv = std::move(conv);
    slot.shape = {1, channels, kWanVaeCacheFrames, h, w};
    slot.offset = layout.numel;
    slot.time_conv = time_conv;
    const int64_t n = slot.numel();
    layout.numel +=
        (n + kWanVaeCacheAlignElements - 1) / kWanVaeCacheAlignElements * kWanVaeCacheAlignElements;
    layout.slots.push_back(std::move(slot));
  };
  auto residual = [&](const std::string& p, int64_t in, int64_t out) {
    add(p + ".conv1", in, false);
    add(p + ".conv2", out, false);
  };

  // Same walk as WanVaeDecoderParamSpecs (model.md §8.3).
  const std::vector<int64_t> dims = config.decoder_dims();
  const std::vector<bool> up_t = config.temperal_upsample();
  add("decoder.conv_in", config.z_dim, false);
  residual("decoder.mid_block.resnets.0", dims[0], dims[0]);
  residual("decoder.mid_block.resnets.1", dims[0], dims[0]);
  int64_t out_dim = dims[0];
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    int64_t in_dim = i > 0 ? dims[i] / 2 : dims[i];
    out_dim = dims[i + 1];
    const std::string p = StrCat("decoder.up_blocks.", i);
    for (int64_t j = 0; j <= config.num_res_blocks; ++j) {
      residual(StrCat(p, ".resnets.", j), in_dim, out_dim);
      in_dim = out_dim;
    }
    if (i + 1 < config.dim_mult.size()) {
      if (up_t[i]) add(p + ".upsamplers.0.time_conv", out_dim, true);
      h *= 2;
      w *= 2;
    }
  }
  add("decoder.conv_out", out_dim, false);
  return layout;
}

}  // namespace longsana::engine
