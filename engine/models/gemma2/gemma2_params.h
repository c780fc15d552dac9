// Gemma2Model parameter table (model.md §2.3): keys without prefix as saved in a diffusers
// `text_encoder/` folder.
#pragma once

#include <string>
#include <string_view>

#include "engine/loader/param_spec.h"
#include "engine/models/gemma2/gemma2_config.h"

namespace longsana::engine {

class Checkpoint;

ParamSpecs Gemma2ParamSpecs(const Gemma2Config& config);

// "" for the diffusers layout, "model." for the causal-LM layout of the original
// gemma-2-2b-it checkpoints (detected from the embedding key).
std::string Gemma2KeyPrefix(const Checkpoint& checkpoint);

// Keys a causal-LM checkpoint carries that the encoder does not use (the tied LM head).
bool IsGemma2IgnoredKey(std::string_view key);

}  // namespace longsana::engine
