#include "engine/sampler/noise.h"

#include <ATen/CPUGeneratorImpl.h>

#include "engine/common/str_util.h"
#include "engine/parity/golden.h"

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

absl::StatusOr<std::unique_ptr<RecordedNoise>> RecordedNoise::FromGolden(const GoldenFile& golden) {
  auto init = golden.Get("in/noise_init");
  if (!init.ok()) return init.status();
  std::unique_ptr<RecordedNoise> noise(new RecordedNoise());
  noise->init_ = init->to(at::kFloat).squeeze(0);  // [1, C, T, h, w] -> [C, T, h, w]
  const std::string prefix = "in/renoise/";
  for (const std::string& name : golden.Names(prefix)) {
    auto t = golden.Get(name);
    if (!t.ok()) return t.status();
    // Recorded as [F, C, h, w] (rows b*F + f); the sampler works in [C, F, h, w].
    noise->renoise_[name.substr(prefix.size())] = t->to(at::kFloat).permute({1, 0, 2, 3}).contiguous();
  }
  return noise;
}

at::Tensor RecordedNoise::BlockNoise(int64_t, int64_t begin, int64_t end, int64_t channels,
                                     int64_t h, int64_t w) {
  TORCH_CHECK(end <= init_.size(1) && init_.size(0) == channels && init_.size(2) == h &&
                  init_.size(3) == w,
              "recorded initial noise ", init_.sizes(), " does not cover frames [", begin, ", ",
              end, ")");
  return init_.slice(1, begin, end).clone();
}

at::Tensor RecordedNoise::Renoise(int64_t block, int step, int64_t frames, int64_t channels,
                                  int64_t h, int64_t w) {
  const std::string key = StrCat("c", block, "_s", step);
  auto it = renoise_.find(key);
  TORCH_CHECK(it != renoise_.end(), "no recorded re-noise draw 'in/renoise/", key, "'");
  TORCH_CHECK(it->second.sizes() == at::IntArrayRef({channels, frames, h, w}),
              "recorded re-noise draw ", key, " has shape ", it->second.sizes());
  return it->second;
}

}  // namespace longsana::engine
