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

// bf16 weights and activations against the fp32 goldens: within the bf16 tolerances, and
// visibly not fp32 (an fp32 run is ~1e-6 off), so the dtype really reached the model.
TEST(DitParity, Bf16ForwardAndStateWithinTheBf16Tolerances) {
  for (const char* golden : {"dit_forward", "dit_state"}) {
    ParityOptions o = Options(golden);
    o.dtype = ParityDtype::kBFloat16;
    auto report =
        golden == std::string("dit_forward") ? RunDitForwardParity(o) : RunDitStateParity(o);
    ASSERT_TRUE(report.ok()) << report.status();
    std::cout << FormatParityReport(*report);
    EXPECT_TRUE(report->ok()) << golden;
    EXPECT_NE(report->component.find("bf16"), std::string::npos);
    for (const Comparison& row : report->rows) {
      if (row.name.ends_with("/v")) {
        EXPECT_GT(row.rel_rms, 1e-4) << row.name << " looks fp32";
      }
    }
  }
}

}  // namespace
}  // namespace longsana::engine
