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

absl::Status CheckStrict(const ParamSpecs& expected, const Checkpoint& checkpoint,
                         std::string_view component, const StrictCheckOptions& options) {
  std::vector<std::string> missing, mis_shaped, unexpected;
  std::map<std::string, bool, std::less<>> expected_keys;
  for (const auto& spec : expected) {
    const std::string key = options.key_prefix + spec.name;
    expected_keys[key] = true;
    const Checkpoint::Entry* e = checkpoint.Find(key);
    if (e == nullptr) {
      missing.push_back(StrCat(key, " ", ShapeToString(spec.shape)));
    } else if (e->info->shape != spec.shape) {
      mis_shaped.push_back(StrCat(key, ": expected ", ShapeToString(spec.shape), ", got ",
                                        ShapeToString(e->info->shape)));
    }
  }
  for (const auto& [key, entry] : checkpoint.entries()) {
    if (expected_keys.count(key) != 0) continue;
    if (options.ignore_unexpected && options.ignore_unexpected(key)) continue;
    unexpected.push_back(StrCat(key, " ", ShapeToString(entry.info->shape)));
  }
  if (missing.empty() && mis_shaped.empty() && unexpected.empty()) return absl::OkStatus();

  std::string msg = StrCat(component, ": checkpoint ", checkpoint.source(),
                                 " does not match the model config (", missing.size(),
                                 " missing, ", unexpected.size(), " unexpected, ",
                                 mis_shaped.size(), " mis-shaped)");
  auto section = [&msg](std::string_view title, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    StrAppend(&msg, "\n  ", title, ":");
    for (const auto& k : keys) StrAppend(&msg, "\n    ", k);
  };
  section("missing", missing);
  section("unexpected", unexpected);
  section("mis-shaped", mis_shaped);
  return absl::InvalidArgumentError(msg);
}

}  // namespace longsana::engine
