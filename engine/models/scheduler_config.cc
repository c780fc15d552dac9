#include "engine/models/scheduler_config.h"

#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"

namespace longsana::engine {

absl::StatusOr<SchedulerConfig> SchedulerConfig::FromJson(const nlohmann::json& json,
                                                          const std::string& source) {
  JsonFields f(source, json);
  SchedulerConfig c;
  LONGSANA_RETURN_IF_ERROR(f.Optional("_class_name", &c.class_name));
  LONGSANA_RETURN_IF_ERROR(f.Optional("num_train_timesteps", &c.num_train_timesteps));
  LONGSANA_RETURN_IF_ERROR(f.Optional("shift", &c.shift));
  return Validated(std::move(c), source);
}

absl::Status SchedulerConfig::Validate() const {
  if (num_train_timesteps != 1000) {
    return absl::InvalidArgumentError(StrCat(
        "field 'num_train_timesteps': the LongSANA sampler needs 1000, got ", num_train_timesteps));
  }
  if (!(shift > 0.0)) return absl::InvalidArgumentError("field 'shift': must be positive");
  return absl::OkStatus();
}

}  // namespace longsana::engine
