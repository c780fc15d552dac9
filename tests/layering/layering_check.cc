#include "tests/layering/layering_check.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string_view>

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
      {"server/metrics/",
       {"grpc", "grpcpp/", "google/protobuf/", ".pb.h", "engine/", "server/http/", "server/auth/",
        "server/server", "server/service", "boost/"},
       {},
       "the metrics registry is a leaf: no gRPC, no engine, no other server code"},
      {"server/http/",
       {"grpc", "grpcpp/", "google/protobuf/", ".pb.h", "engine/", "server/metrics/",
        "server/auth/", "server/server", "server/service"},
       {},
       "the HTTP listener is a leaf: routes are given to it, it knows no service"},
      {"engine/",
       {"grpc", "grpcpp/", "google/protobuf/", ".pb.h", "proto/"},
       {},
       "the engine never includes gRPC or protobuf"},
      {"engine/api/",
       {"torch/", "ATen/", "c10/", "caffe2/"},
       {},
       "the engine facade is torch-free"},
      {"engine/media/", {"torch/", "ATen/", "c10/", "caffe2/"}, {}, "media encoding is torch-free"},
      {"engine/scheduler/",
       {"torch/", "ATen/", "c10/", "caffe2/"},
       {},
       "the scheduler is torch-free (plain-data step plans, CPU tests with fakes)"},
      {"kernels/", {"engine/", "server/", "proto/"}, {}, "kernels know nothing of models"},
      {"client/",
       {"engine/", "server/", "torch/", "ATen/", "c10/", "kernels/"},
       {},
       "the client depends on proto only"},
  };
  return kRules;
}

// Derived from the includes of the tree (issue 10): parity code sits on top of the components
// it checks, the runner on top of everything, and no folder below includes one above it.
const std::vector<EngineEdges>& EngineDependencies() {
  static const std::vector<EngineEdges> kTable = {
      {"engine/common/", {}, "common utilities are the bottom of the engine"},
      {"engine/api/", {"engine/common/"}, "the facade exposes no engine internals"},
      {"engine/loader/",
       {"engine/common/"},
       "the loader reads files and tensors and knows no model"},
      {"engine/scheduler/",
       {"engine/api/", "engine/common/"},
       "the scheduler plans steps over plain data"},
      {"engine/media/", {"engine/common/"}, "media encoding knows no model"},
      {"engine/models/",
       {"engine/common/", "engine/loader/"},
       "a network knows its checkpoint, not the sampler, runner, scheduler, media or parity "
       "code"},
      {"engine/sampler/",
       {"engine/common/", "engine/models/"},
       "the sampler drives the DiT; parity code depends on it, never the reverse"},
      {"engine/text/",
       {"engine/common/", "engine/models/"},
       "the text encoder drives Gemma-2; parity code depends on it, never the reverse"},
      {"engine/parity/",
       {"engine/common/", "engine/loader/", "engine/models/", "engine/sampler/", "engine/text/"},
       "parity runners sit on the components they check and stay out of the serving path"},
      {"engine/runner/",
       {"engine/api/", "engine/common/", "engine/loader/", "engine/media/", "engine/models/",
        "engine/sampler/", "engine/scheduler/", "engine/text/"},
       "the runner assembles the engine and nothing below includes it"},
  };
  return kTable;
}

namespace {

// The row with the longest folder prefix of `path`, or nullptr.
const EngineEdges* EngineRowOf(std::string_view path) {
  const EngineEdges* best = nullptr;
  for (const auto& row : EngineDependencies()) {
    if (path.starts_with(row.folder) &&
        (best == nullptr || row.folder.size() > best->folder.size())) {
      best = &row;
    }
  }
  return best;
}

// The folder an engine include lands in: its table row, else its first two path components.
std::string EngineFolderOf(const std::string& include) {
  if (const EngineEdges* row = EngineRowOf(include)) return row->folder;
  const size_t slash = include.find('/', std::string_view("engine/").size());
  return slash == std::string::npos ? include : include.substr(0, slash + 1);
}

// Empty when `file` (under engine/) may include `include`, else the rule it breaks.
std::string CheckEngineEdge(const std::string& file, const std::string& include) {
  if (!include.starts_with("engine/")) return "";
  const EngineEdges* row = EngineRowOf(file);
  if (row == nullptr) {
    const std::string folder = EngineFolderOf(file);
    return folder +
           " has no row in the engine dependency table "
           "(tests/layering/layering_check.cc), so it may include no engine header";
  }
  if (include.starts_with(row->folder)) return "";
  std::string allowed;
  for (const auto& a : row->allowed) {
    if (include.starts_with(a)) return "";
    allowed += (allowed.empty() ? "" : ", ") + a;
  }
  return row->folder + " must not include " + EngineFolderOf(include) + " (it may include " +
         (allowed.empty() ? std::string("only itself") : "only itself and " + allowed) +
         "): " + row->why;
}

}  // namespace

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
      if (rel.starts_with("engine/")) {
        std::string broken = CheckEngineEdge(rel, inc);
        if (!broken.empty()) out.push_back({rel, number, inc, std::move(broken)});
      }
    }
  }
  return out;
}

std::string FormatViolations(const std::vector<Violation>& violations) {
  std::string s;
  for (const auto& v : violations) {
    s += v.file + ":" + std::to_string(v.line) + ": #include \"" + v.include +
         "\" violates: " + v.rule + "\n";
  }
  return s;
}

}  // namespace longsana::testing
