#include "engine/models/wan_vae/wan_vae_flops.h"

#include "engine/common/str_util.h"
#include "engine/models/wan_vae/wan_vae_cache_layout.h"
#include "engine/models/wan_vae/wan_vae_layers.h"

namespace longsana::engine {

absl::StatusOr<WanVaeFlops> CountWanVaeDecodeFlops(const WanVaeConfig& config, int64_t latent_h,
                                                   int64_t latent_w, bool first_frame) {
  for (auto [name, side] : {std::pair{"latent_h", latent_h}, std::pair{"latent_w", latent_w}}) {
    if (side < 1 || side > kWanVaeMaxLatentSide) {
      return absl::InvalidArgumentError(
          StrCat(name, ": must be in [1, ", kWanVaeMaxLatentSide, "], got ", side));
    }
  }
  WanVaeFlops f;
  int64_t t = 1;  // frames in flight: 1, doubled by each temporal upsampler after frame 0
  for (const WanVaeLayer& l : WanVaeDecoderLayers(config)) {
    const int64_t positions = t * latent_h * l.scale * latent_w * l.scale;
    // A conv with weight [out, in, k...] writing `positions` outputs per output channel.
    auto conv = [&](std::string op, std::vector<int64_t> shape) {
      double macs_per_position = 1;
      for (int64_t s : shape) macs_per_position *= static_cast<double>(s);
      WanVaeOpFlops o{std::move(op), std::move(shape), positions,
                      2 * macs_per_position * static_cast<double>(positions)};
      f.total += o.flops;
      f.ops.push_back(std::move(o));
    };
    switch (l.kind) {
      case WanVaeLayer::Kind::kPostQuantConv:
        conv(l.prefix, {l.out, l.in, 1, 1, 1});
        break;
      case WanVaeLayer::Kind::kConvIn:
      case WanVaeLayer::Kind::kConvOut:
        conv(l.prefix, {l.out, l.in, 3, 3, 3});
        break;
      case WanVaeLayer::Kind::kResidual:
        conv(l.prefix + ".conv1", {l.out, l.in, 3, 3, 3});
        conv(l.prefix + ".conv2", {l.out, l.out, 3, 3, 3});
        if (l.in != l.out) conv(l.prefix + ".conv_shortcut", {l.out, l.in, 1, 1, 1});
        break;
      case WanVaeLayer::Kind::kAttention: {
        // Single head per frame over h*w tokens: qkv and proj 1x1, q k^T and p v.
        conv(l.prefix + ".to_qkv", {3 * l.in, l.in, 1, 1});
        const double tokens = static_cast<double>(positions / t);
        WanVaeOpFlops o{
            l.prefix + " (q k^T, p v)",
            {},
            positions,
            2.0 * 2.0 * static_cast<double>(t) * tokens * tokens * static_cast<double>(l.in)};
        f.total += o.flops;
        f.ops.push_back(std::move(o));
        conv(l.prefix + ".proj", {l.in, l.in, 1, 1});
        break;
      }
      case WanVaeLayer::Kind::kTimeConv:
        if (first_frame) break;  // skipped on latent frame 0
        conv(l.prefix, {l.out, l.in, 3, 1, 1});
        t *= 2;
        break;
      case WanVaeLayer::Kind::kResample:
        conv(l.prefix, {l.out, l.in, 3, 3});
        break;
      case WanVaeLayer::Kind::kNormOut:
        break;  // elementwise
    }
  }
  return f;
}

}  // namespace longsana::engine
