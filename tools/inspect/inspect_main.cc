// longsana-inspect DIR: prints a model directory's components, classes, parameter counts,
// dtypes and bytes, and checks each component's weights strictly against its config.
// Exit status: 0 when everything loads and matches, 1 otherwise.
#include <cstdio>
#include <string>

#include "engine/models/model_directory.h"
#include "engine/models/model_summary.h"

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  auto dir = longsana::engine::ModelDirectory::Open(argv[1]);
  if (!dir.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(dir.status().message()).c_str());
    return 1;
  }
  auto summary = longsana::engine::SummarizeModel(*dir);
  if (!summary.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  std::fputs(longsana::engine::FormatModelSummary(*summary).c_str(), stdout);
  for (const auto& c : summary->components) {
    if (c.check != "OK") return 1;
  }
  return 0;
}
