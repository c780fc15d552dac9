// Parity of the DiT with the reference goldens (GOLDENS.md §2.3, §2.4), through the same
// runners as `longsana-parity`.
#include <gtest/gtest.h>

#include "engine/parity/dit_parity.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::GoldenPath;
using ::longsana::testing::TinyModelDir;

ParityOptions Options(const std::string& golden) {
  ParityOptions o;
  o.model_dir = TinyModelDir();
  o.golden_path = GoldenPath(golden);
  o.verbose = true;  // also the dbg/* intermediates
  return o;
}

TEST(DitParity, ForwardMatchesReferenceIncludingIntermediates) {
  auto report = RunDitForwardParity(Options("dit_forward"));
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
  EXPECT_GE(report->rows.size(), 17u);  // out/v + the dbg tensors
}

TEST(DitParity, StateFromCachePassAndAbsoluteFrameOffset) {
  auto report = RunDitStateParity(Options("dit_state"));
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->rows.size(), 1u + 3u * 2u + 1u);  // cache v, S/z/conv x 2 layers, next/v
}

}  // namespace
}  // namespace longsana::engine
