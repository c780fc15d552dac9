#include "engine/common/json_fields.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/common/str_util.h"

namespace longsana::engine {
namespace {

// Integers may be written as 30 or 30.0; both are accepted, 30.5 is not.
bool AsInt64(const nlohmann::json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > 9.0e15) return false;
    *out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

}  // namespace

std::string_view JsonTypeName(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  if (v.is_object()) return "object";
  return "unknown";
}

absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view source) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(StrCat(source, ": invalid JSON: ", e.what()));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        StrCat(source, ": expected a JSON object at the top level, got ", JsonTypeName(doc)));
  }
  return doc;
}

absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": file not found"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InternalError(StrCat(path, ": read failed"));
  return ParseJsonObject(text.str(), path);
}

const nlohmann::json* JsonFields::Find(std::string_view field) const {
  auto it = object_.find(std::string(field));
  return it == object_.end() ? nullptr : &*it;
}

absl::Status JsonFields::Missing(std::string_view field) const {
  return absl::InvalidArgumentError(
      StrCat(source_, ": required field '", field, "' is missing"));
}

absl::Status JsonFields::Invalid(std::string_view field, std::string_view what) const {
  return absl::InvalidArgumentError(StrCat(source_, ": field '", field, "': ", what));
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 bool* out) const {
  if (!v.is_boolean()) {
    return Invalid(field, StrCat("expected a boolean, got ", JsonTypeName(v)));
  }
  *out = v.get<bool>();
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 int64_t* out) const {
  if (!AsInt64(v, out)) {
    return Invalid(field, StrCat("expected an integer, got ", JsonTypeName(v)));
  }
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v, int* out) const {
  int64_t wide = 0;
  if (!AsInt64(v, &wide)) {
    return Invalid(field, StrCat("expected an integer, got ", JsonTypeName(v)));
  }
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
    return Invalid(field, StrCat("integer ", wide, " is out of range"));
  }
  *out = static_cast<int>(wide);
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 double* out) const {
  if (!v.is_number()) {
    return Invalid(field, StrCat("expected a number, got ", JsonTypeName(v)));
  }
  *out = v.get<double>();
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 std::string* out) const {
  if (!v.is_string()) {
    return Invalid(field, StrCat("expected a string, got ", JsonTypeName(v)));
  }
  *out = v.get<std::string>();
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 std::vector<int64_t>* out) const {
  if (!v.is_array()) {
    return Invalid(field, StrCat("expected an array of integers, got ", JsonTypeName(v)));
  }
  std::vector<int64_t> result;
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t x = 0;
    if (!AsInt64(v[i], &x)) {
      return Invalid(field, StrCat("element ", i, ": expected an integer, got ",
                                         JsonTypeName(v[i])));
    }
    result.push_back(x);
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 std::vector<double>* out) const {
  if (!v.is_array()) {
    return Invalid(field, StrCat("expected an array of numbers, got ", JsonTypeName(v)));
  }
  std::vector<double> result;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number()) {
      return Invalid(field, StrCat("element ", i, ": expected a number, got ",
                                         JsonTypeName(v[i])));
    }
    result.push_back(v[i].get<double>());
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 std::vector<bool>* out) const {
  if (!v.is_array()) {
    return Invalid(field, StrCat("expected an array of booleans, got ", JsonTypeName(v)));
  }
  std::vector<bool> result;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_boolean()) {
      return Invalid(field, StrCat("element ", i, ": expected a boolean, got ",
                                         JsonTypeName(v[i])));
    }
    result.push_back(v[i].get<bool>());
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status JsonFields::Convert(std::string_view field, const nlohmann::json& v,
                                 std::vector<std::string>* out) const {
  if (!v.is_array()) {
    return Invalid(field, StrCat("expected an array of strings, got ", JsonTypeName(v)));
  }
  std::vector<std::string> result;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      return Invalid(field, StrCat("element ", i, ": expected a string, got ",
                                         JsonTypeName(v[i])));
    }
    result.push_back(v[i].get<std::string>());
  }
  *out = std::move(result);
  return absl::OkStatus();
}

}  // namespace longsana::engine
