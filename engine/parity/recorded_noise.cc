#include "engine/parity/recorded_noise.h"

#include "engine/common/str_util.h"

namespace longsana::engine {

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
    noise->renoise_[name.substr(prefix.size())] =
        t->to(at::kFloat).permute({1, 0, 2, 3}).contiguous();
  }
  return noise;
}

at::Tensor RecordedNoise::BlockNoise(int64_t, int64_t begin, int64_t end, int64_t channels,
                                     int64_t h, int64_t w) {
  TORCH_CHECK(
      end <= init_.size(1) && init_.size(0) == channels && init_.size(2) == h && init_.size(3) == w,
      "recorded initial noise ", init_.sizes(), " does not cover frames [", begin, ", ", end, ")");
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
