#include "engine/loader/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "engine/common/str_util.h"
#include "engine/common/json_fields.h"
#include "nlohmann/json.hpp"

namespace longsana::engine {
namespace {

absl::Status Bad(std::string_view source, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(source, ": invalid safetensors file: ", what));
}

absl::Status BadTensor(std::string_view source, std::string_view name, std::string_view what) {
  return Bad(source, StrCat("tensor '", name, "': ", what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return StrCat("[", StrJoin(shape, ", "), "]");
}

absl::StatusOr<TensorInfo> ParseEntry(std::string_view source, const std::string& name,
                                      const nlohmann::json& entry, uint64_t data_size) {
  if (!entry.is_object()) {
    return BadTensor(source, name, StrCat("expected an object, got ", JsonTypeName(entry)));
  }
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return BadTensor(source, name, "missing string field 'dtype'");
  }
  auto dtype = ParseDType(dtype_it->get<std::string>());
  if (!dtype) {
    return BadTensor(source, name,
                     StrCat("unsupported dtype '", dtype_it->get<std::string>(),
                                  "' (allowed: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)"));
  }
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return BadTensor(source, name, "missing array field 'shape'");
  }
  if (shape_it->size() > 16) return BadTensor(source, name, "more than 16 dimensions");
  // Element count with overflow detection: the product must fit the data area anyway.
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : *shape_it) {
    if (!d.is_number_unsigned()) {
      return BadTensor(source, name, "shape entries must be non-negative integers");
    }
    uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return BadTensor(source, name, "shape entry too large");
    }
    info.shape.push_back(static_cast<int64_t>(dim));
    if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
    numel *= dim;
  }

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return BadTensor(source, name, "'data_offsets' must be two non-negative integers");
  }
  info.begin = (*offsets_it)[0].get<uint64_t>();
  info.end = (*offsets_it)[1].get<uint64_t>();
  if (info.begin > info.end) {
    return BadTensor(source, name, StrCat("data_offsets [", info.begin, ", ", info.end,
                                                ") has begin after end"));
  }
  if (info.end > data_size) {
    return BadTensor(source, name,
                     StrCat("data_offsets [", info.begin, ", ", info.end,
                                  ") out of range: the data area holds ", data_size, " bytes"));
  }
  const uint64_t elem = DTypeSize(info.dtype);
  if (overflow || numel > std::numeric_limits<uint64_t>::max() / elem ||
      numel * elem != info.end - info.begin) {
    return BadTensor(source, name,
                     StrCat("shape ", ShapeString(info.shape), " of ", DTypeName(info.dtype),
                                  " needs ", overflow ? std::string("more than 2^64")
                                                      : StrCat(numel * elem),
                                  " bytes but data_offsets span ", info.end - info.begin));
  }
  return info;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::span<const uint8_t> file,
                                                         std::string_view source) {
  if (file.size() < 8) {
    return Bad(source, StrCat("file is ", file.size(),
                                    " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file[i];
  const uint64_t available = file.size() - 8;
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Bad(source, StrCat("header length ", header_len, " exceeds the limit of ",
                                    kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > available) {
    return Bad(source, StrCat("header length ", header_len, " is larger than the ",
                                    available, " bytes that follow it (truncated file?)"));
  }
  if (header_len < 2) return Bad(source, "header is shorter than an empty JSON object");

  std::string_view text(reinterpret_cast<const char*>(file.data() + 8), header_len);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return Bad(source, StrCat("header is not valid JSON: ", e.what()));
  }
  if (!doc.is_object()) {
    return Bad(source, StrCat("header must be a JSON object, got ", JsonTypeName(doc)));
  }

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  header.data_size = available - header_len;

  for (const auto& [name, entry] : doc.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Bad(source, "'__metadata__' must be an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return Bad(source, StrCat("'__metadata__' value of '", key, "' must be a string"));
        }
        header.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    auto info = ParseEntry(source, name, entry, header.data_size);
    if (!info.ok()) return info.status();
    header.tensors.push_back(*std::move(info));
  }

  // Spans must not overlap (empty tensors occupy no bytes and never overlap).
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : header.tensors) {
    if (t.nbytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      return Bad(source, StrCat("tensors '", by_offset[i - 1]->name, "' [",
                                      by_offset[i - 1]->begin, ", ", by_offset[i - 1]->end,
                                      ") and '", by_offset[i]->name, "' [", by_offset[i]->begin,
                                      ", ", by_offset[i]->end, ") overlap"));
    }
  }
  // nlohmann's object iterates keys in sorted order already; keep that as the contract.
  return header;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  auto header = ParseSafetensorsHeader((*mapped)->bytes(), path);
  if (!header.ok()) return header.status();
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(*std::move(mapped), *std::move(header)));
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  const auto& ts = header_.tensors;
  auto it = std::lower_bound(ts.begin(), ts.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  if (it == ts.end() || it->name != name) return nullptr;
  return &*it;
}

std::span<const uint8_t> SafetensorsFile::Bytes(const TensorInfo& info) const {
  return file_->bytes().subspan(header_.data_offset + info.begin, info.nbytes());
}

}  // namespace longsana::engine
