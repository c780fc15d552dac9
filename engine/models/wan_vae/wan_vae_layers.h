// The Wan VAE decoder's layers in execution order (model.md §8.3), derived from the config
// alone: the one walk of the network that its parameter table, its per-session cache layout
// and its FLOP count all read, so that they cannot disagree. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/models/wan_vae/wan_vae_config.h"

namespace longsana::engine {

struct WanVaeLayer {
  enum class Kind {
    kPostQuantConv,  // CausalConv3d 1x1x1 z_dim -> z_dim (no temporal context)
    kConvIn,         // CausalConv3d 3x3x3 in -> out
    kResidual,       // RMS, SiLU, conv1 (3x3x3 in -> out), RMS, SiLU, conv2 (out -> out),
                     // + conv_shortcut (1x1x1 in -> out) when in != out
    kAttention,      // per frame: RMS, to_qkv 1x1 in -> 3 in, softmax, proj 1x1 in -> in
    kTimeConv,       // a temporal upsampler's CausalConv3d (3,1,1) in -> out = 2 in; doubles
                     // the frames, skipped on latent frame 0
    kResample,       // nearest 2x, then Conv2d 3x3 in -> out = in / 2 (at the output size)
    kNormOut,        // RMS over `in` channels
    kConvOut,        // CausalConv3d 3x3x3 in -> 3
  };
  Kind kind;
  std::string prefix;  // diffusers key prefix, e.g. "decoder.up_blocks.1.resnets.0"
  int64_t in = 0, out = 0;
  int64_t scale = 1;  // spatial size where the layer runs, in multiples of the latent's
};

std::vector<WanVaeLayer> WanVaeDecoderLayers(const WanVaeConfig& config);

}  // namespace longsana::engine
