// The LongSANA DiT's parameter table under the diffusers key names (model.md §3.4),
// derived from the config alone.
#pragma once

#include "engine/loader/param_spec.h"
#include "engine/models/longsana_dit/dit_config.h"

namespace longsana::engine {

ParamSpecs DitParamSpecs(const DitConfig& config);

}  // namespace longsana::engine
