// Paths of the test data copied into the repo (tests/testdata).
#pragma once

#include <string>

#ifndef LONGSANA_TESTDATA_DIR
#error "LONGSANA_TESTDATA_DIR must be defined by the build"
#endif

namespace longsana::testing {

inline std::string TestdataPath(const std::string& relative) {
  // Appended in place: GCC 12's -Warray-bounds misfires on `std::string(...) + "/"`.
  std::string path = LONGSANA_TESTDATA_DIR;
  path.append("/").append(relative);
  return path;
}

inline std::string TinyModelDir() { return TestdataPath("tiny-longsana"); }
inline std::string GoldenPath(const std::string& name) {
  return TestdataPath("goldens/" + name + ".safetensors");
}

}  // namespace longsana::testing
