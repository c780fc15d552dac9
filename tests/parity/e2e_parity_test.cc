// The whole chain against the reference (GOLDENS.md §2.8): prompt text -> tokenizer ->
// Gemma-2 (soft-cap, as the e2e golden was made) -> caption -> sampler (exact timesteps,
// the set's recorded noise) -> VAE decoded block by block as it streams -> uint8 frames.
#include <gtest/gtest.h>

#include "engine/parity/e2e_parity.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

TEST(E2eParity, PromptToUint8FramesMatchesTheReference) {
  ParityOptions options;
  options.model_dir = longsana::testing::TinyModelDir();
  options.golden_path = longsana::testing::GoldenPath("e2e");
  options.softcap = true;
  options.timesteps = TimestepMode::kExact;
  options.prompt = "A red fox runs at dawn --ar 16:9";  // prompt 0, with the suffix it strips
  auto report = RunE2eParity(options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->rows.size(), 6u);
}

TEST(E2eParity, PromptDefaultsToTheSetsTokenizerSidecar) {
  ParityOptions options;
  options.model_dir = longsana::testing::TinyModelDir();
  options.golden_path = longsana::testing::GoldenPath("e2e");
  options.softcap = true;
  options.timesteps = TimestepMode::kExact;
  auto report = RunE2eParity(options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
}

}  // namespace
}  // namespace longsana::engine
