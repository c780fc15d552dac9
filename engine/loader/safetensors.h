// safetensors: header validation and zero-copy access to the tensors of a file.
//
// File layout: u64 little-endian header length N, N bytes of JSON header, then the data
// area. The header maps tensor names to {dtype, shape, data_offsets=[begin,end)} (offsets
// relative to the data area) and may hold a "__metadata__" object of string values.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/common/mapped_file.h"
#include "engine/loader/dtype.h"

namespace longsana::engine {

// Headers larger than this are rejected before parsing (the 2B DiT's header is ~100 kB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets inside the data area, [begin, end)
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // absolute offset of the data area in the file
  uint64_t data_size = 0;
};

// Validates the header of a complete safetensors file image. `source` names the file in
// error messages. Rejects: a file shorter than 8 bytes, a header length beyond the file or
// above kMaxSafetensorsHeaderBytes, invalid JSON, a non-object root or entry, an unknown
// dtype, a negative or non-integer shape, shape x element size != byte span (including
// overflow), spans outside the data area, overlapping spans, non-string metadata.
// All failures are InvalidArgument.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::span<const uint8_t> file,
                                                         std::string_view source);

// A validated, memory-mapped safetensors file. Thread-safe for reads.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }

  // nullptr when absent.
  const TensorInfo* Find(std::string_view name) const;
  // Zero-copy view of a tensor's bytes; valid while this object lives.
  std::span<const uint8_t> Bytes(const TensorInfo& info) const;

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header)
      : file_(std::move(file)), header_(std::move(header)) {}

  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

}  // namespace longsana::engine
