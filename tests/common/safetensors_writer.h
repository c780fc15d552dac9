// Builds safetensors byte images for tests, including deliberately corrupt ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace longsana::testing {

struct FakeTensor {
  std::string name;
  std::string dtype;            // "F32", ...
  std::vector<int64_t> shape;
  std::string bytes;            // raw little-endian data
};

// u64 little-endian length + header text + data, with no validation at all.
inline std::string RawSafetensors(uint64_t header_len, const std::string& header,
                                  const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_len >> (8 * i)) & 0xff);
  return out + header + data;
}

// A well-formed file: offsets laid out in order, header padded with spaces to 8 bytes.
inline std::string BuildSafetensors(const std::vector<FakeTensor>& tensors,
                                    const nlohmann::json& metadata = nullptr) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  return RawSafetensors(text.size(), text, data);
}

inline std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

}  // namespace longsana::testing
