// Include-direction rules of HOUSE_STYLE.md, checked by scanning #include lines:
//   client -> proto <- server -> engine/api <- engine (...) -> kernels
#pragma once

#include <string>
#include <vector>

namespace longsana::testing {

struct LayerRule {
  std::string layer;                      // directory prefix, e.g. "server/"
  std::vector<std::string> forbidden;     // include prefixes/substrings it must not use
  std::vector<std::string> exceptions;    // directory prefixes inside `layer` exempt from it
  std::string why;
};

struct Violation {
  std::string file;  // relative to the root
  int line = 0;
  std::string include;
  std::string rule;
};

const std::vector<LayerRule>& LayerRules();

// Scans every C++/CUDA source under `root` (skipping build*/ and tests/testdata) and returns
// each include that crosses a forbidden edge.
std::vector<Violation> CheckLayering(const std::string& root);

std::string FormatViolations(const std::vector<Violation>& violations);

}  // namespace longsana::testing
