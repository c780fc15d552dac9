// Paths of the test data copied into the repo (tests/testdata).
#pragma once

#include <string>

#ifndef LONGSANA_TESTDATA_DIR
#error "LONGSANA_TESTDATA_DIR must be defined by the build"
#endif

namespace longsana::testing {

inline std::string TestdataPath(const std::string& relative) {
  return std::string(LONGSANA_TESTDATA_DIR) + "/" + relative;
}

inline std::string TinyModelDir() { return TestdataPath("tiny-longsana"); }
inline std::string GoldenPath(const std::string& name) {
  return TestdataPath("goldens/" + name + ".safetensors");
}

}  // namespace longsana::testing
