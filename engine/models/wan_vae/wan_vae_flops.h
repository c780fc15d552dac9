// FLOPs of decoding one latent frame with the Wan VAE decoder (model.md §8.3-§8.4), counted
// from the config, torch-free: every convolution and the mid-block attention's matmuls as
// 2 x multiply-adds; norms, activations and the nearest upsampling are left out.
//
// Latent frame 0 makes 1 video frame (the time_convs are skipped); every later one makes 4
// (each temporal upsampler doubles the frames in flight), so the two cost differently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/wan_vae/wan_vae_config.h"

namespace longsana::engine {

struct WanVaeOpFlops {
  std::string op;  // diffusers key prefix, e.g. "decoder.up_blocks.0.resnets.1.conv2"
  std::vector<int64_t>
      weight_shape;              // the checkpoint's shape of op + ".weight" (attention: to_qkv)
  int64_t output_positions = 0;  // frames x H x W where the op writes (per output channel)
  double flops = 0;
};

struct WanVaeFlops {
  std::vector<WanVaeOpFlops> ops;  // execution order
  double total = 0;
};

// InvalidArgument naming latent_h / latent_w when outside [1, kWanVaeMaxLatentSide].
absl::StatusOr<WanVaeFlops> CountWanVaeDecodeFlops(const WanVaeConfig& config, int64_t latent_h,
                                                   int64_t latent_w, bool first_frame);

}  // namespace longsana::engine
