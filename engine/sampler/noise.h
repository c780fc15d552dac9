// Where a session's Gaussian draws come from (binding decision 7): a per-session generator
// seeded from the request seed. Draws are made on the CPU in fp32, so a seed gives the same
// noise on every device. Parity checks replay recorded draws instead (RecordedNoise,
// engine/parity/recorded_noise.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

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

// Draws in the order they are requested (the sampler's order is deterministic: block 0's
// initial noise, its re-noise draws, block 1's initial noise, ...). Not thread-safe.
class SeededNoise final : public NoiseSource {
 public:
  explicit SeededNoise(uint64_t seed);
  at::Tensor BlockNoise(int64_t block, int64_t begin, int64_t end, int64_t channels, int64_t h,
                        int64_t w) override;
  at::Tensor Renoise(int64_t block, int step, int64_t frames, int64_t channels, int64_t h,
                     int64_t w) override;

 private:
  at::Generator generator_;
};

}  // namespace longsana::engine
