#include "tests/layering/layering_check.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

namespace longsana::testing {
namespace fs = std::filesystem;

const std::vector<LayerRule>& LayerRules() {
  static const std::vector<LayerRule> kRules = {
      {"server/",
       {"torch/", "ATen/", "c10/", "caffe2/", "engine/common/", "engine/loader/", "engine/models/",
        "engine/runner/", "engine/scheduler/", "engine/sampler/", "engine/text/", "engine/media/",
        "engine/parity/", "kernels/"},
       {},
       "server sees only engine/api (no LibTorch, no engine internals)"},
      {"engine/",
       {"grpc", "grpcpp/", "google/protobuf/", ".pb.h", "proto/"},
       {},
       "the engine never includes gRPC or protobuf"},
      {"engine/api/",
       {"torch/", "ATen/", "c10/", "caffe2/"},
       {},
       "the engine facade is torch-free"},
      {"engine/media/",
       {"torch/", "ATen/", "c10/", "caffe2/"},
       {},
       "media encoding is torch-free"},
      {"kernels/", {"engine/", "server/", "proto/"}, {}, "kernels know nothing of models"},
      {"client/",
       {"engine/", "server/", "torch/", "ATen/", "c10/", "kernels/"},
       {},
       "the client depends on proto only"},
  };
  return kRules;
}

std::vector<Violation> CheckLayering(const std::string& root) {
  static const std::regex kInclude(R"(^\s*#\s*include\s*[<"]([^>"]+)[>"])");
  static const std::set<std::string> kExtensions = {".h", ".hpp", ".cc", ".cpp", ".cu", ".cuh"};
  std::vector<Violation> out;
  const fs::path base(root);
  for (auto it = fs::recursive_directory_iterator(base); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = fs::relative(it->path(), base).generic_string();
    if (it->is_directory()) {
      const std::string name = it->path().filename().string();
      if (name.starts_with("build") || name.starts_with(".") || rel == "tests/testdata") {
        it.disable_recursion_pending();
      }
      continue;
    }
    if (kExtensions.count(it->path().extension().string()) == 0) continue;
    std::ifstream in(it->path());
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      std::smatch m;
      if (!std::regex_search(line, m, kInclude)) continue;
      const std::string inc = m[1].str();
      for (const auto& rule : LayerRules()) {
        if (!rel.starts_with(rule.layer)) continue;
        bool exempt = false;
        for (const auto& e : rule.exceptions) exempt = exempt || rel.starts_with(e);
        if (exempt) continue;
        for (const auto& f : rule.forbidden) {
          const bool hit = f.back() == '/' || f == "grpc" ? inc.starts_with(f)
                                                          : inc.find(f) != std::string::npos;
          if (hit) {
            out.push_back({rel, number, inc, rule.why});
            break;  // one report per include and rule
          }
        }
      }
    }
  }
  return out;
}

std::string FormatViolations(const std::vector<Violation>& violations) {
  std::string s;
  for (const auto& v : violations) {
    s += v.file + ":" + std::to_string(v.line) + ": #include \"" + v.include + "\" violates: " +
         v.rule + "\n";
  }
  return s;
}

}  // namespace longsana::testing
