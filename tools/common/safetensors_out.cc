#include "tools/common/safetensors_out.h"

#include <algorithm>
#include <fstream>

#include "engine/common/str_util.h"
#include "nlohmann/json.hpp"

namespace longsana::tools {
namespace {

const char* DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "F32";
    case at::kBFloat16:
      return "BF16";
    case at::kHalf:
      return "F16";
    case at::kLong:
      return "I64";
    case at::kInt:
      return "I32";
    case at::kByte:
      return "U8";
    default:
      return nullptr;
  }
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, std::vector<SafetensorsEntry> entries,
                              const std::function<at::Tensor(const SafetensorsEntry&)>& produce) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const SafetensorsEntry& e : entries) {
    const char* dtype = DtypeName(e.dtype);
    if (dtype == nullptr) {
      return absl::InvalidArgumentError(
          StrCat(e.name, ": unsupported dtype ", c10::toString(e.dtype)));
    }
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(e.dtype));
    header[e.name] = {
        {"dtype", dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = text.size();  // little-endian hosts only (x86-64, aarch64)
  out.write(reinterpret_cast<const char*>(&length), sizeof length);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const SafetensorsEntry& e : entries) {
    at::Tensor t = produce(e).to(at::kCPU, e.dtype).contiguous();
    if (t.sizes().vec() != e.shape) {
      return absl::InvalidArgumentError(
          StrCat(e.name, ": produced shape ", c10::str(t.sizes()), " is not the entry's"));
    }
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
  out.close();
  if (!out) return absl::UnavailableError(StrCat("writing ", path, " failed (disk full?)"));
  return absl::OkStatus();
}

}  // namespace longsana::tools
