// Read-only memory map of a whole file (RAII).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace longsana::engine {

// Owns a read-only, private mapping of a file. Movable, not copyable. Thread-safe to read.
// An empty file maps to an empty span (no mapping is created).
class MappedFile {
 public:
  // NotFound when the file does not exist, FailedPrecondition when it is not a regular file,
  // Internal for other OS errors. Every message names the path.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace longsana::engine
