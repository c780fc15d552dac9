#include "engine/models/model_directory.h"

#include <filesystem>
#include <set>

#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"
#include "engine/loader/checkpoint.h"

namespace longsana::engine {
namespace fs = std::filesystem;
namespace {

struct Supported {
  const char* component;
  bool required;
  std::set<std::string> classes;
};

const std::vector<Supported>& SupportedComponents() {
  static const std::vector<Supported> kSupported = {
      {"transformer", true,
       {"SanaVideoTransformer3DModel", "SanaVideoCausalTransformer3DModel"}},
      {"vae", true, {"AutoencoderKLWan"}},
      {"text_encoder", true, {"Gemma2Model", "Gemma2ForCausalLM"}},
      {"tokenizer", true, {"GemmaTokenizer", "GemmaTokenizerFast"}},
      {"scheduler", false, {}},  // any: the LongSANA loop brings its own schedule
  };
  return kSupported;
}

}  // namespace

absl::StatusOr<ModelIndex> ModelIndex::FromJson(const nlohmann::json& json,
                                                const std::string& source) {
  JsonFields f(source, json);
  ModelIndex index;
  LONGSANA_RETURN_IF_ERROR(f.Optional("_class_name", &index.class_name));
  for (const auto& [key, value] : json.items()) {
    if (key.starts_with("_")) continue;
    // Components are ["library", "Class"]; [null, null] marks an absent optional one.
    if (!value.is_array()) continue;
    if (value.size() != 2) {
      return f.Invalid(key, "expected a [library, class] pair");
    }
    if (value[0].is_null() && value[1].is_null()) continue;
    if (!value[0].is_string() || !value[1].is_string()) {
      return f.Invalid(key, "expected a [library, class] pair of strings");
    }
    index.components[key] = Component{value[0].get<std::string>(), value[1].get<std::string>()};
  }
  return Validated(std::move(index), source);
}

absl::Status ModelIndex::Validate() const {
  for (const auto& s : SupportedComponents()) {
    auto it = components.find(s.component);
    if (it == components.end()) {
      if (s.required) {
        return absl::InvalidArgumentError(
            StrCat("required component '", s.component, "' is missing"));
      }
      continue;
    }
    if (!s.classes.empty() && s.classes.count(it->second.class_name) == 0) {
      std::vector<std::string> allowed(s.classes.begin(), s.classes.end());
      return absl::InvalidArgumentError(StrCat(
          "field '", s.component, "': class '", it->second.class_name,
          "' is not supported (supported: ", StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelDirectory> ModelDirectory::Open(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(StrCat(root, ": model directory not found"));
  }
  ModelDirectory dir;
  dir.root = root;
  const fs::path r(root);
  LONGSANA_ASSIGN_OR_RETURN(nlohmann::json index_json,
                            ReadJsonObjectFile((r / "model_index.json").string()));
  LONGSANA_ASSIGN_OR_RETURN(dir.index,
                            ModelIndex::FromJson(index_json, (r / "model_index.json").string()));
  LONGSANA_ASSIGN_OR_RETURN(dir.transformer,
                            DitConfig::FromFile((r / "transformer" / "config.json").string()));
  LONGSANA_ASSIGN_OR_RETURN(dir.vae,
                            WanVaeConfig::FromFile((r / "vae" / "config.json").string()));
  LONGSANA_ASSIGN_OR_RETURN(dir.text_encoder,
                            Gemma2Config::FromFile((r / "text_encoder" / "config.json").string()));
  if (!fs::is_directory(r / "tokenizer", ec)) {
    return absl::NotFoundError(StrCat((r / "tokenizer").string(), ": directory not found"));
  }
  LONGSANA_ASSIGN_OR_RETURN(dir.tokenizer,
                            TokenizerConfig::FromDirectory((r / "tokenizer").string()));
  const fs::path sched = r / "scheduler" / "scheduler_config.json";
  if (fs::exists(sched, ec)) {
    LONGSANA_ASSIGN_OR_RETURN(nlohmann::json sj, ReadJsonObjectFile(sched.string()));
    LONGSANA_ASSIGN_OR_RETURN(dir.scheduler, SchedulerConfig::FromJson(sj, sched.string()));
  }
  if (dir.transformer.caption_channels != dir.text_encoder.hidden_size) {
    return absl::InvalidArgumentError(StrCat(
        (r / "transformer" / "config.json").string(), ": field 'caption_channels': ",
        dir.transformer.caption_channels, " does not match the text encoder's hidden_size ",
        dir.text_encoder.hidden_size));
  }
  if (dir.transformer.in_channels != dir.vae.z_dim || dir.transformer.out_channels != dir.vae.z_dim) {
    return absl::InvalidArgumentError(StrCat(
        (r / "transformer" / "config.json").string(),
        ": fields 'in_channels'/'out_channels' must equal the VAE's z_dim ", dir.vae.z_dim));
  }
  return dir;
}

std::string ModelDirectory::ComponentDir(const std::string& component) const {
  return (fs::path(root) / component).string();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> ModelDirectory::OpenWeights(
    const std::string& component) const {
  return Checkpoint::OpenDirectory(ComponentDir(component));
}

}  // namespace longsana::engine
