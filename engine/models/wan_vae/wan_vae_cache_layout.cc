#include "engine/models/wan_vae/wan_vae_cache_layout.h"

#include "absl/status/status.h"
#include "engine/common/str_util.h"
#include "engine/models/wan_vae/wan_vae_layers.h"

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
  for (const WanVaeLayer& l : WanVaeDecoderLayers(config)) {
    const int64_t h = latent_h * l.scale, w = latent_w * l.scale;
    auto add = [&](std::string conv, int64_t channels, bool time_conv) {
      WanVaeCacheSlot slot;
      slot.conv = std::move(conv);
      slot.shape = {1, channels, kWanVaeCacheFrames, h, w};
      slot.offset = layout.numel;
      slot.time_conv = time_conv;
      const int64_t n = slot.numel();
      layout.numel += (n + kWanVaeCacheAlignElements - 1) / kWanVaeCacheAlignElements *
                      kWanVaeCacheAlignElements;
      layout.slots.push_back(std::move(slot));
    };
    // Every temporal-kernel-3 conv keeps its last 2 input frames; 1x1x1 convs keep nothing.
    switch (l.kind) {
      case WanVaeLayer::Kind::kConvIn:
      case WanVaeLayer::Kind::kConvOut:
        add(l.prefix, l.in, false);
        break;
      case WanVaeLayer::Kind::kResidual:
        add(l.prefix + ".conv1", l.in, false);
        add(l.prefix + ".conv2", l.out, false);
        break;
      case WanVaeLayer::Kind::kTimeConv:
        add(l.prefix, l.in, true);
        break;
      case WanVaeLayer::Kind::kPostQuantConv:
      case WanVaeLayer::Kind::kAttention:
      case WanVaeLayer::Kind::kResample:
      case WanVaeLayer::Kind::kNormOut:
        break;
    }
  }
  return layout;
}

}  // namespace longsana::engine
