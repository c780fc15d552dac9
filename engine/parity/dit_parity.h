// Parity runners for the DiT and the sampler against reference goldens (GOLDENS.md §2.3-2.6):
// `longsana-parity dit-forward|dit-state|sampler`. Tests call the same functions.
#pragma once

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::engine {

// One forward on the first block with an empty state: out/v (+ dbg/* with verbose).
absl::StatusOr<ParityReport> RunDitForwardParity(const ParityOptions& options);
// A cache pass (state/layer*/S, z, conv and cache_pass/v), then a later block reading that
// state at its absolute frame offset (next/v).
absl::StatusOr<ParityReport> RunDitStateParity(const ParityOptions& options);
// The whole LongLive loop with the recorded noise: out/latent, the σ values and segments
// (+ every dbg/c{j}/... call, state_in and state_own with verbose). options.timesteps selects
// the convention (golden `sampler` is exact, `sampler_bf16t` bf16-rounded).
absl::StatusOr<ParityReport> RunSamplerParity(const ParityOptions& options);

// The base block length of a golden's `in/segments` [0, b1, ..., T]: the last block's
// length (the first block absorbs the remainder).
int64_t BaseBlockFrames(const at::Tensor& segments);

}  // namespace longsana::engine
