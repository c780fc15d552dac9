#include "engine/sampler/sigma_table.h"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>

#include <cmath>
#include <limits>

namespace longsana::engine {

SigmaTable::SigmaTable(double shift, int num_train_timesteps) {
  // s_i = linspace(1, 0, N + 1)[:-1]; σ_i = shift s_i / (1 + (shift - 1) s_i); τ_i = N σ_i.
  // Evaluated with ATen in fp32 so the values equal the reference's table bit for bit.
  at::Tensor s = at::linspace(1.0, 0.0, num_train_timesteps + 1, at::kFloat)
                     .slice(0, 0, num_train_timesteps);
  at::Tensor sigma = shift * s / (1 + (shift - 1) * s);
  at::Tensor tau = sigma * static_cast<double>(num_train_timesteps);
  sigma = sigma.contiguous();
  tau = tau.contiguous();
  sigmas_.assign(sigma.data_ptr<float>(), sigma.data_ptr<float>() + sigma.numel());
  timesteps_.assign(tau.data_ptr<float>(), tau.data_ptr<float>() + tau.numel());
}

float SigmaTable::Sigma(double t) const {
  const float tf = static_cast<float>(t);
  size_t best = 0;
  float best_diff = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < timesteps_.size(); ++i) {
    const float diff = std::fabs(timesteps_[i] - tf);
    if (diff < best_diff) {
      best_diff = diff;
      best = i;
    }
  }
  return sigmas_[best];
}

double RoundToBf16(double t) {
  return static_cast<float>(c10::BFloat16(static_cast<float>(t)));
}

}  // namespace longsana::engine
