#include "engine/parity/parity_options.h"

#include "engine/common/str_util.h"

namespace longsana::engine {

absl::StatusOr<ParityDtype> ParseParityDtype(std::string_view name) {
  if (name == "fp32") return ParityDtype::kFloat32;
  if (name == "bf16") return ParityDtype::kBFloat16;
  return absl::InvalidArgumentError(StrCat("dtype: '", name, "' is not fp32 or bf16"));
}

std::string_view ParityDtypeName(ParityDtype dtype) {
  return dtype == ParityDtype::kBFloat16 ? "bf16" : "fp32";
}

}  // namespace longsana::engine
