// Layout of the Wan VAE decoder's per-session causal-conv cache (model.md §8.4), derived
// from the config and the latent resolution alone, so that the bytes a session needs are
// known before anything is allocated (admission control, slab sizing). Torch-free.
//
// One slot per temporal-kernel-3 CausalConv3d of the decoder, in execution order:
//   decoder.conv_in, decoder.mid_block.resnets.{0,1}.{conv1,conv2},
//   decoder.up_blocks.{i}.resnets.{j}.{conv1,conv2}, decoder.up_blocks.{i}.upsamplers.0.time_conv
//   (temporal upsamplers only), decoder.conv_out.
// 1x1x1 convs (post_quant_conv, conv_shortcut) have no temporal context and no slot.
// Each slot holds the last 2 *input* frames of its conv: shape [1, C_in, 2, H, W] at the
// resolution the conv runs at. The slots live in one buffer; every slot starts at an offset
// that is a multiple of kWanVaeCacheAlignElements elements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/wan_vae/wan_vae_config.h"

namespace longsana::engine {

inline constexpr int64_t kWanVaeCacheFrames = 2;          // temporal kernel 3 - 1
inline constexpr int64_t kWanVaeCacheAlignElements = 16;  // 64 bytes in fp32
inline constexpr int64_t kWanVaeMaxLatentSide = 1024;     // 8192 pixels

struct WanVaeCacheSlot {
  std::string conv;            // diffusers key prefix, e.g. "decoder.conv_in"
  std::vector<int64_t> shape;  // [1, C_in, 2, H, W]
  int64_t offset = 0;          // elements from the start of the cache buffer
  bool time_conv = false;      // an upsample3d time_conv (skipped on latent frame 0)

  int64_t numel() const;
};

struct WanVaeCacheLayout {
  int64_t latent_h = 0;
  int64_t latent_w = 0;
  std::vector<WanVaeCacheSlot> slots;  // execution order
  int64_t numel = 0;                   // buffer elements, alignment padding included

  int64_t bytes(int64_t element_size) const { return numel * element_size; }
};

// InvalidArgument naming `latent_h` / `latent_w` when outside [1, kWanVaeMaxLatentSide];
// the config must already be valid (WanVaeConfig::Validate).
absl::StatusOr<WanVaeCacheLayout> ComputeWanVaeCacheLayout(const WanVaeConfig& config,
                                                           int64_t latent_h, int64_t latent_w);

}  // namespace longsana::engine
