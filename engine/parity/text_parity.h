// Parity runners for the text half (GOLDENS.md §2.1, §2.2, §5), shared by
// `longsana-parity tokenizer|gemma2` and the tests (one code path).
#pragma once

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::engine {

// goldens/tokenizer.safetensors (+ its JSON sidecar, which holds the cleaned prompts, the CHI
// text and L): checks kChiPrompt against the sidecar's text, then chi_ids, n_chi, plain_ids,
// plain_len, full_ids, full_mask, select_index, sel_ids, sel_mask and max_len_all, all
// exactly. Uses options.model_dir/tokenizer. L is read from the golden (select_index).
absl::StatusOr<ParityReport> RunTokenizerParity(const ParityOptions& options);

// goldens/gemma2.safetensors: runs Gemma2Encoder (fp32 on options.device; soft-cap per
// options.softcap) on simple/* and chi/* inputs and compares last_hidden_state_{sdpa|eager}
// and chi/caption_{sdpa|eager} (atol 2e-4, rtol 1e-4) and chi/caption_mask (exact);
// options.verbose adds simple/dbg_eager/layer{i}_input (layer 0 always, deeper layers with
// the soft-cap only, since the golden traces the eager run). On CUDA, TF32 is disabled
// process-wide (a global LibTorch setting).
absl::StatusOr<ParityReport> RunGemma2Parity(const ParityOptions& options);

}  // namespace longsana::engine
