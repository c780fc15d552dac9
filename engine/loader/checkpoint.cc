#include "engine/loader/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"

namespace longsana::engine {
namespace fs = std::filesystem;

absl::StatusOr<std::map<std::string, std::string>> ParseShardIndex(std::string_view json_text,
                                                                   std::string_view source) {
  LONGSANA_ASSIGN_OR_RETURN(nlohmann::json doc, ParseJsonObject(json_text, source));
  auto it = doc.find("weight_map");
  if (it == doc.end()) {
    return absl::InvalidArgumentError(
        StrCat(source, ": required field 'weight_map' is missing"));
  }
  if (!it->is_object()) {
    return absl::InvalidArgumentError(StrCat(
        source, ": field 'weight_map': expected an object, got ", JsonTypeName(*it)));
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : it->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(StrCat(source, ": field 'weight_map': entry '", name,
                                                     "' must be a string file name"));
    }
    std::string file = shard.get<std::string>();
    if (file.empty() || file == "." || file == ".." ||
        file.find_first_of("/\\") != std::string::npos || file.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(StrCat(source, ": field 'weight_map': entry '", name,
                                                     "' names '", file,
                                                     "', which is not a plain file name"));
    }
    map.emplace(name, std::move(file));
  }
  return map;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->source_ = path;
  for (const auto& info : file->tensors()) ckpt->entries_[info.name] = Entry{&info, file.get()};
  ckpt->files_.push_back(std::move(file));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenIndex(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(index_path, ": file not found"));
  std::ostringstream text;
  text << in.rdbuf();
  LONGSANA_ASSIGN_OR_RETURN(auto weight_map, ParseShardIndex(text.str(), index_path));

  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->source_ = index_path;
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, SafetensorsFile*> shards;
  for (const auto& [name, shard_name] : weight_map) {
    if (shards.count(shard_name) != 0) continue;
    const std::string shard_path = (dir / shard_name).string();
    auto file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      if (absl::IsNotFound(file.status())) {
        return absl::NotFoundError(StrCat(index_path, ": shard '", shard_name,
                                                "' named in the index is missing (", shard_path,
                                                ")"));
      }
      return file.status();
    }
    shards[shard_name] = file->get();
    ckpt->files_.push_back(*std::move(file));
  }
  std::vector<std::string> absent;
  for (const auto& [name, shard_name] : weight_map) {
    SafetensorsFile* file = shards.at(shard_name);
    const TensorInfo* info = file->Find(name);
    if (info == nullptr) {
      absent.push_back(StrCat("'", name, "' (expected in ", shard_name, ")"));
      continue;
    }
    ckpt->entries_[name] = Entry{info, file};
  }
  if (!absent.empty()) {
    return absl::InvalidArgumentError(StrCat(
        index_path, ": ", absent.size(), " tensor(s) listed in the index are not in their shard: ",
        StrJoin(absent, ", ")));
  }
  return ckpt;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenDirectory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(StrCat(dir, ": weights directory not found"));
  }
  for (const char* name : {"diffusion_pytorch_model.safetensors.index.json",
                           "model.safetensors.index.json"}) {
    fs::path p = fs::path(dir) / name;
    if (fs::exists(p, ec)) return OpenIndex(p.string());
  }
  for (const char* name : {"diffusion_pytorch_model.safetensors", "model.safetensors"}) {
    fs::path p = fs::path(dir) / name;
    if (fs::exists(p, ec)) return OpenFile(p.string());
  }
  std::vector<std::string> indexes, files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.ends_with(".safetensors.index.json")) indexes.push_back(e.path().string());
    if (n.ends_with(".safetensors")) files.push_back(e.path().string());
  }
  if (indexes.size() == 1) return OpenIndex(indexes[0]);
  if (indexes.empty() && files.size() == 1) return OpenFile(files[0]);
  if (indexes.empty() && files.empty()) {
    return absl::NotFoundError(StrCat(dir, ": no *.safetensors weights found"));
  }
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  return absl::InvalidArgumentError(StrCat(
      dir, ": ambiguous weights: ", StrJoin(indexes.empty() ? files : indexes, ", "),
      "; keep one file or one *.safetensors.index.json"));
}

const Checkpoint::Entry* Checkpoint::Find(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

int64_t Checkpoint::num_params() const {
  int64_t n = 0;
  for (const auto& [name, e] : entries_) n += e.info->numel();
  return n;
}

uint64_t Checkpoint::num_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, e] : entries_) n += e.info->nbytes();
  return n;
}

}  // namespace longsana::engine
