// LongSANA DiT configuration, parsed from a diffusers `transformer/config.json`
// (SanaVideoTransformer3DModel / SanaVideoCausalTransformer3DModel field names; model.md §3.1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

struct DitConfig {
  std::string class_name;
  // Required: these define the parameter shapes.
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  int64_t num_attention_heads = 20;
  int64_t attention_head_dim = 112;  // the linear self-attention head dim
  int64_t num_layers = 20;
  int64_t num_cross_attention_heads = 20;
  int64_t cross_attention_head_dim = 112;
  int64_t cross_attention_dim = 2240;
  int64_t caption_channels = 2304;
  double mlp_ratio = 3.0;
  std::vector<int64_t> patch_size = {1, 2, 2};  // (t, h, w)
  // Optional, with the reference's defaults.
  double norm_eps = 1e-6;
  bool norm_elementwise_affine = false;
  bool attention_bias = false;
  std::string qk_norm = "rms_norm_across_heads";
  int64_t rope_max_seq_len = 1024;
  bool guidance_embeds = false;
  int64_t sample_size = 30;

  // Fixed by the architecture (model.md §3–§4), not in config.json.
  static constexpr int64_t kTimestepChannels = 256;
  static constexpr double kSelfAttnNormEps = 1e-5;    // q/k RMSNorm of the linear attention
  static constexpr double kCrossAttnNormEps = 1e-6;   // q/k RMSNorm of the cross-attention
  static constexpr double kCaptionNormEps = 1e-5;     // caption_norm
  static constexpr double kLinearAttnEps = 1e-8;      // denominator epsilon
  static constexpr double kRopeTheta = 10000.0;

  int64_t hidden_size() const { return num_attention_heads * attention_head_dim; }
  int64_t ffn_hidden() const { return static_cast<int64_t>(hidden_size() * mlp_ratio); }
  int64_t patch_volume() const { return patch_size[0] * patch_size[1] * patch_size[2]; }
  // RoPE split of a head (model.md §6): height and width get 2*floor(d/6) channels each.
  int64_t rope_h_dim() const { return 2 * (attention_head_dim / 6); }
  int64_t rope_w_dim() const { return rope_h_dim(); }
  int64_t rope_t_dim() const { return attention_head_dim - 2 * rope_h_dim(); }

  // InvalidArgument naming `source` and the field for a missing or mistyped field.
  static absl::StatusOr<DitConfig> FromJson(const nlohmann::json& json, const std::string& source);
  static absl::StatusOr<DitConfig> FromFile(const std::string& path);
  // Consistency of the architecture; InvalidArgument naming the offending field.
  absl::Status Validate() const;
};

}  // namespace longsana::engine
