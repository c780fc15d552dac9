// Replays the Gaussian draws a reference run recorded in a golden file, so the sampler's
// output can be compared tensor by tensor (GOLDENS.md §3.3). Parity only: production
// sessions draw from SeededNoise (engine/sampler/noise.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/sampler/noise.h"

namespace longsana::engine {

// Serves `in/noise_init` [1, C, T, h, w] and `in/renoise/c{j}_s{s}` [F_j, C, h, w]. Throws
// c10::Error when a draw the sampler asks for is not in the golden. Not thread-safe.
class RecordedNoise final : public NoiseSource {
 public:
  // InvalidArgument when the golden has no `in/noise_init`.
  static absl::StatusOr<std::unique_ptr<RecordedNoise>> FromGolden(const GoldenFile& golden);
  at::Tensor BlockNoise(int64_t block, int64_t begin, int64_t end, int64_t channels, int64_t h,
                        int64_t w) override;
  at::Tensor Renoise(int64_t block, int step, int64_t frames, int64_t channels, int64_t h,
                     int64_t w) override;

 private:
  at::Tensor init_;                            // [C, T, h, w]
  std::map<std::string, at::Tensor> renoise_;  // "c{j}_s{s}" -> [C, F, h, w]
};

}  // namespace longsana::engine
