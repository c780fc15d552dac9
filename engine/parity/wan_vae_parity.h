// `longsana-parity vae`: the Wan VAE decoder against the vae_decode golden
// (tests/testdata/GOLDENS.md §2.7, tolerances §5).
#pragma once

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::engine {

// Loads the VAE decoder of options.model_dir (options.dtype on options.device, its cache in
// that dtype), decodes the golden's `in/z` in one DecodeBlock call with a fresh cache and
// compares (tolerances.h; fp32 values shown)
//   out/video, out/video_clamped   Close(atol 5e-5, rtol 1e-4)
//   out/video_uint8                at most +-1 on < 0.5% of the bytes
//   out/num_frames                 exact
//   dbg/z_vae (verbose)            exact (binding decision 4 reproduces it bit for bit)
// Errors (NotFound / InvalidArgument) come from opening the model folder or the golden, or a
// missing tensor; a tolerance failure is a report row, not an error. On CUDA the runner
// turns TF32 off for the process (GOLDENS.md §5).
absl::StatusOr<ParityReport> RunVaeParity(const ParityOptions& options);

}  // namespace longsana::engine
