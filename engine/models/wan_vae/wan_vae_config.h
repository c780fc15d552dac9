// Wan2.1 VAE configuration, parsed from a diffusers `vae/config.json` (AutoencoderKLWan
// field names; model.md §8.1). Only the decoder side is used.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

struct WanVaeConfig {
  std::string class_name;
  int64_t base_dim = 96;
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<double> attn_scales;
  std::vector<bool> temperal_downsample = {false, true, true};  // diffusers' spelling
  std::vector<double> latents_mean;  // z_dim values
  std::vector<double> latents_std;   // z_dim values
  double dropout = 0.0;

  // Channels entering each decoder stage: base_dim * [mult[-1], reversed(mult)...].
  std::vector<int64_t> decoder_dims() const;
  // The decoder upsamples in time at stage i when temperal_upsample()[i].
  std::vector<bool> temperal_upsample() const;
  int64_t temporal_stride() const;  // 4 for Wan2.1
  int64_t spatial_stride() const;   // 8 for Wan2.1

  static absl::StatusOr<WanVaeConfig> FromJson(const nlohmann::json& json,
                                               const std::string& source);
  static absl::StatusOr<WanVaeConfig> FromFile(const std::string& path);
  absl::Status Validate() const;
};

}  // namespace longsana::engine
