// Where a session's Gaussian draws come from (binding decision 7): generators seeded from
// the request seed. Draws are made on the CPU in fp32, so a seed gives the same noise on
// every device. Parity checks replay recorded draws instead (RecordedNoise,
// engine/parity/recorded_noise.h). Every source is a pure function of the draw's
// arguments: asking twice gives the same tensor, so a step that failed and is retried draws
// exactly what it would have drawn the first time.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace longsana::engine {

class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  // Initial noise of block `block`, latent frames [begin, end): [C, end-begin, h, w].
  virtual at::Tensor BlockNoise(int64_t block, int64_t begin, int64_t end, int64_t channels,
                                int64_t h, int64_t w) = 0;
  // The re-noise draw of block `block` after denoise step `step`: [C, frames, h, w].
  virtual at::Tensor Renoise(int64_t block, int step, int64_t frames, int64_t channels, int64_t h,
                             int64_t w) = 0;
};

// Counter-based: each (block, step) draw comes from its own CPU generator, seeded from the
// session seed and the draw's indices. Thread-safe.
class SeededNoise final : public NoiseSource {
 public:
  explicit SeededNoise(uint64_t seed);
  at::Tensor BlockNoise(int64_t block, int64_t begin, int64_t end, int64_t channels, int64_t h,
                        int64_t w) override;
  at::Tensor Renoise(int64_t block, int step, int64_t frames, int64_t channels, int64_t h,
                     int64_t w) override;

 private:
  at::Tensor Draw(uint64_t draw, std::vector<int64_t> sizes) const;

  uint64_t seed_;
};

}  // namespace longsana::engine
