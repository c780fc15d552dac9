#include "engine/loader/param_spec.h"

#include <map>

#include "absl/status/status.h"
#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"

namespace longsana::engine {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t CountParams(const ParamSpecs& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += s.numel();
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return StrCat("[", StrJoin(shape, ", "), "]");
}

absl::Status CheckStrictShapes(const ParamSpecs& expected, const KeyShapes& present,
                               std::string_view source, const StrictCheckOptions& options) {
  std::vector<std::string> missing, mis_shaped, unexpected;
  std::map<std::string, bool, std::less<>> expected_keys;
  for (const auto& spec : expected) {
    const std::string key = options.key_prefix + spec.name;
    expected_keys[key] = true;
    auto it = present.find(key);
    if (it == present.end()) {
      missing.push_back(StrCat(key, " ", ShapeToString(spec.shape)));
    } else if (it->second != spec.shape) {
      mis_shaped.push_back(StrCat(key, ": expected ", ShapeToString(spec.shape), ", got ",
                                  ShapeToString(it->second)));
    }
  }
  for (const auto& [key, shape] : present) {
    if (expected_keys.count(key) != 0) continue;
    if (options.ignore_unexpected && options.ignore_unexpected(key)) continue;
    unexpected.push_back(StrCat(key, " ", ShapeToString(shape)));
  }
  if (missing.empty() && mis_shaped.empty() && unexpected.empty()) return absl::OkStatus();

  std::string msg = StrCat(source, " does not match the model config (", missing.size(),
                           " missing, ", unexpected.size(), " unexpected, ", mis_shaped.size(),
                           " mis-shaped)");
  for (const auto& k : missing) StrAppend(&msg, "\n  missing: ", k);
  for (const auto& k : unexpected) StrAppend(&msg, "\n  unexpected: ", k);
  for (const auto& k : mis_shaped) StrAppend(&msg, "\n  mis-shaped: ", k);
  return absl::InvalidArgumentError(msg);
}

absl::Status CheckStrict(const ParamSpecs& expected, const Checkpoint& checkpoint,
                         std::string_view component, const StrictCheckOptions& options) {
  KeyShapes present;
  for (const auto& [key, entry] : checkpoint.entries()) present.emplace(key, entry.info->shape);
  return CheckStrictShapes(expected, present,
                           StrCat(component, ": checkpoint ", checkpoint.source()), options);
}

}  // namespace longsana::engine
