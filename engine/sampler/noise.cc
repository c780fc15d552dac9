#include "engine/sampler/noise.h"

#include <ATen/CPUGeneratorImpl.h>

namespace longsana::engine {

namespace {

// SplitMix64's finaliser: decorrelates the seeds of neighbouring draws.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

SeededNoise::SeededNoise(uint64_t seed) : seed_(seed) {}

at::Tensor SeededNoise::Draw(uint64_t draw, std::vector<int64_t> sizes) const {
  at::Generator generator = at::detail::createCPUGenerator(Mix(seed_ ^ Mix(draw)));
  return at::randn(sizes, generator, at::kFloat);
}

// Draw counter = block << 16 | (step + 1) (0 for the block's initial noise): every draw of
// a session gets its own generator seed.
at::Tensor SeededNoise::BlockNoise(int64_t block, int64_t begin, int64_t end, int64_t channels,
                                   int64_t h, int64_t w) {
  return Draw(static_cast<uint64_t>(block) << 16, {channels, end - begin, h, w});
}

at::Tensor SeededNoise::Renoise(int64_t block, int step, int64_t frames, int64_t channels,
                                int64_t h, int64_t w) {
  return Draw(static_cast<uint64_t>(block) << 16 | static_cast<uint64_t>(step + 1) & 0xFFFF,
              {channels, frames, h, w});
}

}  // namespace longsana::engine
