// Parameter table of the Wan VAE decoder side (post_quant_conv + decoder.*) under the
// diffusers AutoencoderKLWan key names (model.md §8.3), derived from the config alone.
#pragma once

#include <string_view>

#include "engine/loader/param_spec.h"
#include "engine/models/wan_vae/wan_vae_config.h"

namespace longsana::engine {

ParamSpecs WanVaeDecoderParamSpecs(const WanVaeConfig& config);

// Encoder-side keys (encoder.*, quant_conv.*) that a full VAE checkpoint carries and the
// decoder ignores.
bool IsWanVaeEncoderKey(std::string_view key);

}  // namespace longsana::engine
