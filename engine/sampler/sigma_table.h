// The σ lookup of LongLiveFlowEuler (model.md §7.1): FlowMatchScheduler(shift, sigma_min=0,
// extra_one_step=True) with 1000 training steps; a timestep maps to the σ of the nearest
// table entry. Reproduces the reference's fp32 arithmetic.
#pragma once

#include <vector>

namespace longsana::engine {

class SigmaTable {
 public:
  explicit SigmaTable(double shift, int num_train_timesteps = 1000);

  // σ of the entry whose timestep 1000·σ_i is nearest to t (first on ties).
  float Sigma(double t) const;

  const std::vector<float>& sigmas() const { return sigmas_; }
  const std::vector<float>& timesteps() const { return timesteps_; }

 private:
  std::vector<float> sigmas_;
  std::vector<float> timesteps_;
};

// t rounded to the nearest bfloat16 (ties to even), as a bf16 model sees it.
double RoundToBf16(double t);

}  // namespace longsana::engine
