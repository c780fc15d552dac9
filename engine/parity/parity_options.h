// Options shared by the per-component parity runners (`longsana-parity COMPONENT ...`).
// Each runner reads the golden's `in/*` tensors (names as in tests/testdata/GOLDENS.md),
// runs our implementation, and compares every `out/*` tensor (and with `verbose`, the
// `dbg/*` tensors) with the tolerances of GOLDENS.md §5.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/sampler/sampler_options.h"  // TimestepMode

namespace longsana::engine {

// The compute dtype of the component under test (weights and activations). The goldens are
// fp32 references; a bf16 run is compared with the bf16 tolerances of
// engine/parity/tolerances.h. The same on every device: the serving dtypes (bf16 DiT and Gemma
// on CUDA) are asked for explicitly, never implied by the device.
enum class ParityDtype { kFloat32, kBFloat16 };

// "fp32" / "bf16"; InvalidArgument for anything else.
absl::StatusOr<ParityDtype> ParseParityDtype(std::string_view name);
std::string_view ParityDtypeName(ParityDtype dtype);

struct ParityOptions {
  std::string model_dir;    // diffusers-layout model folder matching the golden
  std::string golden_path;  // *.safetensors golden file
  bool verbose = false;     // also compare dbg/* tensors
  TimestepMode timesteps = TimestepMode::kBf16Rounded;
  bool softcap = false;     // Gemma-2 attention logit soft-cap (eager behaviour)
  std::string device = "cpu";  // "cpu" or "cuda"
  ParityDtype dtype = ParityDtype::kFloat32;  // dit-*, sampler, gemma2, vae and e2e
  // e2e: the user prompt. Empty: prompt 0 of the golden set's tokenizer sidecar
  // (tokenizer.json beside the golden), with its motion-score suffix removed.
  std::string prompt;
};

}  // namespace longsana::engine
