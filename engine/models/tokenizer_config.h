// Tokenizer settings from `tokenizer/tokenizer_config.json` and `special_tokens_map.json`
// (transformers field names).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

struct TokenizerConfig {
  std::string tokenizer_class;
  bool add_bos_token = true;   // Gemma prepends BOS
  bool add_eos_token = false;  // and adds no EOS
  std::string bos_token = "<bos>";
  std::string eos_token = "<eos>";
  std::string pad_token = "<pad>";
  std::string unk_token = "<unk>";

  // Special tokens may be plain strings or {"content": "..."} objects (AddedToken).
  static absl::StatusOr<TokenizerConfig> FromJson(const nlohmann::json& json,
                                                  const std::string& source);
  // Reads `dir`/tokenizer_config.json (optional: defaults when absent).
  static absl::StatusOr<TokenizerConfig> FromDirectory(const std::string& dir);
  absl::Status Validate() const;
};

}  // namespace longsana::engine
