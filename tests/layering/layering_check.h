// Include-direction rules of HOUSE_STYLE.md, checked by scanning #include lines:
//   client -> proto <- server -> engine/api <- engine (...) -> kernels
// plus, inside engine/, a table of the engine folders each folder may include.
#pragma once

#include <string>
#include <vector>

namespace longsana::testing {

struct LayerRule {
  std::string layer;                    // directory prefix, e.g. "server/"
  std::vector<std::string> forbidden;   // include prefixes/substrings it must not use
  std::vector<std::string> exceptions;  // directory prefixes inside `layer` exempt from it
  std::string why;
};

// One row of the intra-engine dependency table: the files under `folder` (subfolders
// included) may include their own folder and the `allowed` engine folders, no other
// `engine/...` header. An engine file whose folder has no row may include no engine header.
struct EngineEdges {
  std::string folder;                // "engine/sampler/"
  std::vector<std::string> allowed;  // "engine/common/", ...
  std::string why;
};

struct Violation {
  std::string file;  // relative to the root
  int line = 0;
  std::string include;
  std::string rule;
};

const std::vector<LayerRule>& LayerRules();
const std::vector<EngineEdges>& EngineDependencies();

// Scans every C++/CUDA source under `root` (skipping build*/, hidden folders and
// tests/testdata) and returns each include that crosses a forbidden edge.
std::vector<Violation> CheckLayering(const std::string& root);

// One line per violation: `FILE:LINE: #include "X" violates: RULE`.
std::string FormatViolations(const std::vector<Violation>& violations);

}  // namespace longsana::testing
