#include "engine/sampler/noise.h"

#include <ATen/CPUGeneratorImpl.h>

namespace longsana::engine {

SeededNoise::SeededNoise(uint64_t seed) : generator_(at::detail::createCPUGenerator(seed)) {}

at::Tensor SeededNoise::BlockNoise(int64_t, int64_t begin, int64_t end, int64_t channels, int64_t h,
                                   int64_t w) {
  return at::randn({channels, end - begin, h, w}, generator_, at::kFloat);
}

at::Tensor SeededNoise::Renoise(int64_t, int, int64_t frames, int64_t channels, int64_t h,
                                int64_t w) {
  return at::randn({channels, frames, h, w}, generator_, at::kFloat);
}

}  // namespace longsana::engine
