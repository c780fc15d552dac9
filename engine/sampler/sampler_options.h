// Settings of the LongLive flow-Euler sampler (model.md §7).
#pragma once

#include "engine/common/request_checks.h"  // BlockBoundaries

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace longsana::engine {

// Which timesteps the model and the x0 conversion see (binding decision 2).
enum class TimestepMode {
  kBf16Rounded,  // default: as the released bf16 model: 1000/960/888/728, exact re-noise
  kExact,        // exact integers 1000/960/889/727 everywhere
};

struct SamplerOptions {
  std::vector<double> timesteps = {1000, 960, 889, 727};  // strictly decreasing, in (0, 1000]
  TimestepMode timestep_mode = TimestepMode::kBf16Rounded;
  double flow_shift = 7.0;       // inference_flow_shift: the σ lookup grid
  int64_t block_frames = 10;     // latent frames per block; the first block absorbs the rest
  int num_cached_blocks = -1;    // -1: global context; K > 0: the last K blocks

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};



}  // namespace longsana::engine
