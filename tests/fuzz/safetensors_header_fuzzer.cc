// libFuzzer target: the safetensors header parser must reject any byte string cleanly.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/loader/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto header = longsana::engine::ParseSafetensorsHeader(std::span<const uint8_t>(data, size),
                                                         "fuzz");
  if (header.ok()) {
    // Every accepted span lies inside the input.
    for (const auto& t : header->tensors) {
      if (header->data_offset + t.end > size) __builtin_trap();
    }
  }
  return 0;
}
