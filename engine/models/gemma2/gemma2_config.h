// Gemma-2 text encoder configuration, parsed from `text_encoder/config.json` (transformers'
// Gemma2Config field names; model.md §2.3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

struct Gemma2Config {
  std::vector<std::string> architectures;
  // Required: these define the parameter shapes.
  int64_t vocab_size = 256000;
  int64_t hidden_size = 2304;
  int64_t intermediate_size = 9216;
  int64_t num_hidden_layers = 26;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 256;
  // Optional, with transformers' Gemma2Config defaults.
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double query_pre_attn_scalar = 256.0;
  std::optional<double> attn_logit_softcapping = 50.0;
  std::optional<double> final_logit_softcapping = 30.0;
  std::optional<int64_t> sliding_window = 4096;
  int64_t max_position_embeddings = 8192;
  std::string hidden_activation = "gelu_pytorch_tanh";
  bool attention_bias = false;
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 2;
  int64_t eos_token_id = 1;

  static absl::StatusOr<Gemma2Config> FromJson(const nlohmann::json& json,
                                               const std::string& source);
  static absl::StatusOr<Gemma2Config> FromFile(const std::string& path);
  absl::Status Validate() const;
};

}  // namespace longsana::engine
