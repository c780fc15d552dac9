// Writing safetensors files from the tools (the engine only reads them): the header first,
// then each tensor's bytes in header order, each produced on demand, so a file larger than
// memory (a random 2B checkpoint) is written one tensor at a time.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace longsana::tools {

struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype = at::kFloat;  // kFloat, kBFloat16, kHalf, kLong, kInt, kByte
  std::vector<int64_t> shape;
};

// `produce(entry)` returns the tensor of an entry (any dtype and device: it is converted);
// its shape must be the entry's. Entries are written sorted by name, as the header lists
// them. Unavailable when the file cannot be written, InvalidArgument for a bad entry.
absl::Status WriteSafetensors(const std::string& path, std::vector<SafetensorsEntry> entries,
                              const std::function<at::Tensor(const SafetensorsEntry&)>& produce);

}  // namespace longsana::tools
