// Parity of the whole LongLive loop with the reference (GOLDENS.md §2.5, §2.6): the final
// latent and every recorded call, for both timestep conventions.
#include <gtest/gtest.h>

#include "engine/parity/dit_parity.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

ParityOptions Options(const std::string& golden, TimestepMode mode) {
  ParityOptions o;
  o.model_dir = longsana::testing::TinyModelDir();
  o.golden_path = longsana::testing::GoldenPath(golden);
  o.verbose = true;
  o.timesteps = mode;
  return o;
}

TEST(SamplerParity, ExactTimesteps) {
  auto report = RunSamplerParity(Options("sampler", TimestepMode::kExact));
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
  EXPECT_GT(report->rows.size(), 80u);  // every dbg call was compared
}

TEST(SamplerParity, Bf16RoundedTimestepsIsTheDefault) {
  ParityOptions o = Options("sampler_bf16t", ParityOptions{}.timesteps);
  EXPECT_EQ(o.timesteps, TimestepMode::kBf16Rounded);
  auto report = RunSamplerParity(o);
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
}

// The conventions are not interchangeable: each golden fails under the other one.
TEST(SamplerParity, WrongConventionIsDetected) {
  auto report = RunSamplerParity(Options("sampler_bf16t", TimestepMode::kExact));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
}

}  // namespace
}  // namespace longsana::engine
