#include "engine/sampler/sampler_options.h"

#include "engine/common/str_util.h"

namespace longsana::engine {

absl::Status SamplerOptions::Validate() const {
  if (timesteps.empty()) return absl::InvalidArgumentError("timesteps: must not be empty");
  if (timesteps.size() > 50) {
    return absl::InvalidArgumentError(StrCat("timesteps: at most 50 steps, got ", timesteps.size()));
  }
  for (size_t i = 0; i < timesteps.size(); ++i) {
    const double t = timesteps[i];
    if (!(t > 0.0 && t <= 1000.0)) {
      return absl::InvalidArgumentError(
          StrCat("timesteps: entry ", i, " is ", t, ", must be in (0, 1000]"));
    }
    if (i > 0 && !(t < timesteps[i - 1])) {
      return absl::InvalidArgumentError(StrCat("timesteps: must be strictly decreasing (entry ", i,
                                               " is ", t, " after ", timesteps[i - 1], ")"));
    }
  }
  if (!(flow_shift > 0.0 && flow_shift < 100.0)) {
    return absl::InvalidArgumentError(StrCat("flow_shift: must be in (0, 100), got ", flow_shift));
  }
  if (block_frames < 1 || block_frames > 1024) {
    return absl::InvalidArgumentError(
        StrCat("block_frames: must be in [1, 1024], got ", block_frames));
  }
  if (num_cached_blocks != -1 && (num_cached_blocks < 1 || num_cached_blocks > 1024)) {
    return absl::InvalidArgumentError(StrCat(
        "num_cached_blocks: must be -1 (global context) or in [1, 1024], got ", num_cached_blocks));
  }
  return absl::OkStatus();
}

}  // namespace longsana::engine
