// Options shared by the per-component parity runners (`longsana-parity COMPONENT ...`).
// Each runner reads the golden's `in/*` tensors (names as in tests/testdata/GOLDENS.md),
// runs our implementation, and compares every `out/*` tensor (and with `verbose`, the
// `dbg/*` tensors) with the tolerances of GOLDENS.md §5.
#pragma once

#include <string>

#include "engine/sampler/sampler_options.h"  // TimestepMode

namespace longsana::engine {

struct ParityOptions {
  std::string model_dir;    // diffusers-layout model folder matching the golden
  std::string golden_path;  // *.safetensors golden file
  bool verbose = false;     // also compare dbg/* tensors
  TimestepMode timesteps = TimestepMode::kBf16Rounded;
  bool softcap = false;     // Gemma-2 attention logit soft-cap (eager behaviour)
  std::string device = "cpu";  // "cpu" or "cuda"
  // e2e: the user prompt. Empty: prompt 0 of the golden set's tokenizer sidecar
  // (tokenizer.json beside the golden), with its motion-score suffix removed.
  std::string prompt;
};

}  // namespace longsana::engine
