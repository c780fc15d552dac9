// The components `longsana-parity` can check, by name.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::tools {

using ParityRunner =
    std::function<absl::StatusOr<engine::ParityReport>(const engine::ParityOptions&)>;

const std::map<std::string, ParityRunner>& ParityComponents();

}  // namespace longsana::tools
