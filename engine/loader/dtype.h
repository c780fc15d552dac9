// Element types of checkpoint tensors (the safetensors dtype vocabulary).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace longsana::engine {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32 ...; nullopt for anything outside the supported set.
std::optional<DType> ParseDType(std::string_view name);
std::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

}  // namespace longsana::engine
