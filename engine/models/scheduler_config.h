// The noise-scheduler config of a model folder, `scheduler/scheduler_config.json` (not to be
// confused with engine/scheduler, the session scheduler). The LongSANA loop uses only its own step
// list and the σ table of model.md §7.1; this config contributes the training timestep count.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace longsana::engine {

struct SchedulerConfig {
  std::string class_name;
  int64_t num_train_timesteps = 1000;
  double shift = 1.0;

  static absl::StatusOr<SchedulerConfig> FromJson(const nlohmann::json& json,
                                                  const std::string& source);
  absl::Status Validate() const;
};

}  // namespace longsana::engine
