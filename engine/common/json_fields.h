// Typed, validated access to the fields of a JSON object read from a file.
// Every error message names the file and the field, e.g.
//   "transformer/config.json: field 'num_layers': expected an integer, got string".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace longsana::engine {

// Parses `text` as a JSON document whose root must be an object. InvalidArgument names
// `source` (a file name) and the parser's byte position on error.
absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view source);

// Reads and parses a JSON object file. NotFound when the file is missing.
absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path);

// Field reader over one JSON object. Does not own the object; keep it alive.
// Unknown fields are ignored. Not thread-safe (reads only, but keeps the source name).
class JsonFields {
 public:
  JsonFields(std::string source, const nlohmann::json& object)
      : source_(std::move(source)), object_(object) {}

  // Sets *out from a field that must be present and non-null.
  template <typename T>
  absl::Status Required(std::string_view field, T* out) const {
    const nlohmann::json* value = Find(field);
    if (value == nullptr || value->is_null()) return Missing(field);
    return Convert(field, *value, out);
  }

  // Sets *out when the field is present and non-null; otherwise keeps the in-class default.
  template <typename T>
  absl::Status Optional(std::string_view field, T* out) const {
    const nlohmann::json* value = Find(field);
    if (value == nullptr || value->is_null()) return absl::OkStatus();
    return Convert(field, *value, out);
  }

  // Like Optional, but a JSON null (or absence) resets *out to std::nullopt.
  template <typename T>
  absl::Status Nullable(std::string_view field, std::optional<T>* out) const {
    const nlohmann::json* value = Find(field);
    if (value == nullptr || value->is_null()) {
      out->reset();
      return absl::OkStatus();
    }
    T v{};
    absl::Status s = Convert(field, *value, &v);
    if (s.ok()) *out = v;
    return s;
  }

  bool Has(std::string_view field) const { return Find(field) != nullptr; }
  const std::string& source() const { return source_; }

  // InvalidArgument "<source>: field '<field>': <what>" for validation in callers.
  absl::Status Invalid(std::string_view field, std::string_view what) const;

 private:
  const nlohmann::json* Find(std::string_view field) const;
  absl::Status Missing(std::string_view field) const;

  absl::Status Convert(std::string_view field, const nlohmann::json& v, bool* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v, int64_t* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v, int* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v, double* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v, std::string* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v,
                       std::vector<int64_t>* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v,
                       std::vector<double>* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v,
                       std::vector<bool>* out) const;
  absl::Status Convert(std::string_view field, const nlohmann::json& v,
                       std::vector<std::string>* out) const;

  std::string source_;
  const nlohmann::json& object_;
};

// Runs config.Validate(); on failure the InvalidArgument is prefixed with `source` (the file).
template <typename Config>
absl::StatusOr<Config> Validated(Config config, const std::string& source) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(source + ": " + std::string(valid.message()));
  }
  return config;
}

// Config::FromJson(ReadJsonObjectFile(path), path).
template <typename Config>
absl::StatusOr<Config> ConfigFromFile(const std::string& path) {
  absl::StatusOr<nlohmann::json> json = ReadJsonObjectFile(path);
  if (!json.ok()) return json.status();
  return Config::FromJson(*json, path);
}

// "string", "integer", "number", "boolean", "array", "object" or "null": for messages.
std::string_view JsonTypeName(const nlohmann::json& v);

}  // namespace longsana::engine
