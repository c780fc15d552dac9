// The parity tolerances of every component, per compute dtype.
//
// fp32 rows are GOLDENS.md §5 (the reference's own fp32-vs-fp32 noise, a few ulps grown through
// the layers), elementwise. The goldens are fp32, so a bf16 run is compared with bf16 bounds
// relative to each tensor's own scale (Tolerance::Scaled: relative RMS error and peak error
// over the peak value), set in tolerances.cc from what the tiny configuration measures on CPU
// (`longsana-parity COMPONENT --dtype bf16` prints both) with headroom for other kernels
// (cuBLAS, oneDNN). bf16 keeps 8 significant bits (unit roundoff 2^-9, ~2e-3 per rounding) and
// every layer rounds its weights, activations and matmul outputs, so one to a few percent of
// the scale is what a correct bf16 model shows; a broken kernel (a wrong mask, a swapped axis,
// a missing norm) is off by the scale itself, far above these bounds.
#pragma once

#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::engine {

struct DitTolerances {
  Tolerance velocity;    // out/v, next/v, cache_pass/v and the dbg/* intermediates
  Tolerance state_sum;   // state S and z (sums over every token so far)
  Tolerance state_conv;  // the conv tail of the state
  Tolerance sampler;     // the LongLive loop: latents, x_in, v, x0 per step
};
struct VaeTolerances {
  Tolerance video;  // out/video, out/video_clamped in [-1, 1]
  Tolerance uint8;  // out/video_uint8
};
struct E2eTolerances {
  Tolerance caption, latent, video, video_uint8;
};

const DitTolerances& DitTolerancesFor(ParityDtype dtype);
const Tolerance& GemmaToleranceFor(ParityDtype dtype);
const VaeTolerances& VaeTolerancesFor(ParityDtype dtype);
// e2e: every component at `dtype` (the VAE included).
const E2eTolerances& E2eTolerancesFor(ParityDtype dtype);

// The tensor dtype of a ParityDtype.
inline at::ScalarType ScalarTypeOf(ParityDtype dtype) {
  return dtype == ParityDtype::kBFloat16 ? at::kBFloat16 : at::kFloat;
}

// RoPE tables are computed in fp64 whatever the dtype.
inline Tolerance RopeTableTolerance() { return Tolerance::Close(1e-12, 0.0); }

}  // namespace longsana::engine
