#include "engine/models/tokenizer_config.h"

#include <filesystem>

#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"

namespace longsana::engine {
namespace {

absl::Status ReadSpecialToken(const JsonFields& f, const nlohmann::json& json,
                              std::string_view field, std::string* out) {
  auto it = json.find(std::string(field));
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (it->is_string()) {
    *out = it->get<std::string>();
    return absl::OkStatus();
  }
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      *out = content->get<std::string>();
      return absl::OkStatus();
    }
    return f.Invalid(field, "expected a string or an object with a string 'content'");
  }
  return f.Invalid(field, StrCat("expected a string or an object, got ", JsonTypeName(*it)));
}

}  // namespace

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJson(const nlohmann::json& json,
                                                          const std::string& source) {
  JsonFields f(source, json);
  TokenizerConfig c;
  LONGSANA_RETURN_IF_ERROR(f.Optional("tokenizer_class", &c.tokenizer_class));
  LONGSANA_RETURN_IF_ERROR(f.Optional("add_bos_token", &c.add_bos_token));
  LONGSANA_RETURN_IF_ERROR(f.Optional("add_eos_token", &c.add_eos_token));
  LONGSANA_RETURN_IF_ERROR(ReadSpecialToken(f, json, "bos_token", &c.bos_token));
  LONGSANA_RETURN_IF_ERROR(ReadSpecialToken(f, json, "eos_token", &c.eos_token));
  LONGSANA_RETURN_IF_ERROR(ReadSpecialToken(f, json, "pad_token", &c.pad_token));
  LONGSANA_RETURN_IF_ERROR(ReadSpecialToken(f, json, "unk_token", &c.unk_token));
  return Validated(std::move(c), source);
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromDirectory(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return TokenizerConfig{};
  LONGSANA_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonObjectFile(path));
  return FromJson(json, path);
}

absl::Status TokenizerConfig::Validate() const {
  if (add_eos_token) {
    return absl::InvalidArgumentError(
        "field 'add_eos_token': must be false (the reference appends no EOS)");
  }
  if (bos_token.empty()) return absl::InvalidArgumentError("field 'bos_token': must not be empty");
  if (pad_token.empty()) return absl::InvalidArgumentError("field 'pad_token': must not be empty");
  return absl::OkStatus();
}

}  // namespace longsana::engine
