// What a model directory holds, per component: class, parameter count, dtypes, bytes, and
// whether the weights match what the config expects. Torch-free: reads headers only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/model_directory.h"

namespace longsana::engine {

struct ComponentSummary {
  std::string name;        // "transformer", "vae", ...
  std::string library;
  std::string class_name;
  bool has_weights = false;
  int64_t num_params = 0;               // in the checkpoint
  int64_t expected_params = 0;          // from the config (the parts we run)
  uint64_t num_bytes = 0;
  std::map<std::string, int64_t> params_by_dtype;  // "F32" -> count
  std::vector<std::string> files;
  std::string check;  // "OK", or the strict-check error
};

struct ModelSummary {
  std::string root;
  std::string pipeline_class;
  std::vector<ComponentSummary> components;
};

// Opens each component's weights and checks them strictly against its config. A failed
// strict check is reported in ComponentSummary::check, not as an error; an unreadable
// file is an error.
absl::StatusOr<ModelSummary> SummarizeModel(const ModelDirectory& dir);

// A human-readable table.
std::string FormatModelSummary(const ModelSummary& summary);

}  // namespace longsana::engine
