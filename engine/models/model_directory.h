// A LongSANA model folder in the diffusers layout (model.md §9.2):
//   model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/.
// Opening parses and validates every component's config; weights are opened on demand.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/gemma2/gemma2_config.h"
#include "engine/models/longsana_dit/dit_config.h"
#include "engine/models/scheduler_config.h"
#include "engine/models/tokenizer_config.h"
#include "engine/models/wan_vae/wan_vae_config.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

class Checkpoint;

struct ModelIndex {
  struct Component {
    std::string library;     // "diffusers" or "transformers"
    std::string class_name;  // e.g. "SanaVideoTransformer3DModel"
  };
  std::string class_name;  // the pipeline class
  std::map<std::string, Component> components;

  static absl::StatusOr<ModelIndex> FromJson(const nlohmann::json& json, const std::string& source);
  // Every required component (transformer, vae, text_encoder, tokenizer) is present with a
  // class this server implements. InvalidArgument names the component.
  absl::Status Validate() const;
};

struct ModelDirectory {
  std::string root;
  ModelIndex index;
  DitConfig transformer;
  WanVaeConfig vae;
  Gemma2Config text_encoder;
  TokenizerConfig tokenizer;
  SchedulerConfig scheduler;  // defaults when scheduler/ is absent

  // NotFound when `root` or a required file is missing; InvalidArgument (naming the file
  // and field) for a malformed or unsupported config.
  static absl::StatusOr<ModelDirectory> Open(const std::string& root);

  std::string ComponentDir(const std::string& component) const;
  // The weights of a component folder (single file or sharded).
  absl::StatusOr<std::unique_ptr<Checkpoint>> OpenWeights(const std::string& component) const;
};

}  // namespace longsana::engine
