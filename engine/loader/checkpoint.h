// The weights of one model component: a single safetensors file or a set of shards listed
// by a "*.safetensors.index.json" (the Hugging Face sharded layout).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/loader/safetensors.h"

namespace longsana::engine {

// Parses the "weight_map" of a shard index (tensor name -> shard file name). Shard names
// must be plain file names in the index's directory. InvalidArgument names `source`.
absl::StatusOr<std::map<std::string, std::string>> ParseShardIndex(std::string_view json_text,
                                                                   std::string_view source);

// Immutable after Open; thread-safe for reads. Views stay valid while the object lives.
class Checkpoint {
 public:
  struct Entry {
    const TensorInfo* info = nullptr;
    const SafetensorsFile* file = nullptr;
  };

  // A single .safetensors file.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);
  // A shard index; every shard it names must exist (NotFound names the index and the shard)
  // and hold the tensors the index assigns to it.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenIndex(const std::string& index_path);
  // A component directory of a diffusers/transformers model folder. Picks, in order:
  // diffusion_pytorch_model.safetensors.index.json, model.safetensors.index.json,
  // diffusion_pytorch_model.safetensors, model.safetensors, then the only *.index.json or
  // the only *.safetensors. NotFound when the directory holds no weights.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenDirectory(const std::string& dir);

  const Entry* Find(std::string_view name) const;
  const std::map<std::string, Entry, std::less<>>& entries() const { return entries_; }
  std::span<const uint8_t> Bytes(const Entry& entry) const { return entry.file->Bytes(*entry.info); }

  // The files the weights come from (one, or the shards).
  std::vector<std::string> files() const;
  // Where the weights were opened from (a file or an index).
  const std::string& source() const { return source_; }

  int64_t num_params() const;
  uint64_t num_bytes() const;

 private:
  Checkpoint() = default;

  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace longsana::engine
