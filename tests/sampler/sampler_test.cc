// The sampler's bookkeeping: block partition, σ table, timestep conventions, the step-level
// API, determinism per seed, extend/stop, option validation.
#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/models/model_directory.h"
#include "engine/parity/golden.h"
#include "engine/sampler/longlive_sampler.h"
#include "tests/common/testdata.h"
#include "tests/sampler/sampler_fixture.h"

namespace longsana::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BlockBoundaries, FirstBlockAbsorbsTheRemainder) {
  EXPECT_THAT(BlockBoundaries(21, 10), ElementsAre(0, 11, 21));
  EXPECT_THAT(BlockBoundaries(11, 3), ElementsAre(0, 5, 8, 11));
  EXPECT_THAT(BlockBoundaries(20, 10), ElementsAre(0, 10, 20));
  EXPECT_THAT(BlockBoundaries(5, 10), ElementsAre(0, 5));
  EXPECT_THAT(BlockBoundaries(10, 10), ElementsAre(0, 10));
  const auto minute = BlockBoundaries(241, 10);  // 961 frames = 1 minute
  EXPECT_EQ(minute.size(), 25u);
  EXPECT_EQ(minute[1], 11);
  EXPECT_EQ(minute.back(), 241);
}

TEST(SigmaTable, EqualsTheReferenceTable) {
  auto golden = GoldenFile::Open(longsana::testing::GoldenPath("sampler"));
  ASSERT_TRUE(golden.ok());
  SigmaTable table(7.0);
  at::Tensor sigmas = at::tensor(table.sigmas());
  at::Tensor taus = at::tensor(table.timesteps());
  EXPECT_TRUE(at::equal(sigmas, *golden->Get("in/sigma_table")));
  EXPECT_TRUE(at::equal(taus, *golden->Get("in/sigma_table_timesteps")));
  // GOLDENS.md §3.2
  EXPECT_EQ(table.Sigma(1000), 1.0f);
  EXPECT_EQ(table.Sigma(960), 0.9599574208259583f);
  EXPECT_EQ(table.Sigma(889), 0.8891531825065613f);
  EXPECT_EQ(table.Sigma(888), 0.8879598379135132f);
  EXPECT_EQ(table.Sigma(727), 0.7274096608161926f);
  EXPECT_EQ(table.Sigma(728), 0.7283996939659119f);
}

TEST(SigmaTable, Bf16Rounding) {
  EXPECT_EQ(RoundToBf16(1000), 1000);
  EXPECT_EQ(RoundToBf16(960), 960);
  EXPECT_EQ(RoundToBf16(889), 888);
  EXPECT_EQ(RoundToBf16(727), 728);
}

TEST(SamplerOptions, ValidationNamesTheField) {
  SamplerOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.timesteps = {1000, 1000};
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("timesteps: must be strictly decreasing"));
  o.timesteps = {1200};
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("must be in (0, 1000]"));
  o = SamplerOptions{};
  o.num_cached_blocks = 0;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("num_cached_blocks"));
}

TEST_F(SamplerTest, StepApiWalksDenoiseStepsThenTheCachePass) {
  auto s = Session(1, 8);  // blocks [0, 5, 8)
  ASSERT_EQ(s->num_blocks(), 2);
  SamplerSession* one[] = {s.get()};
  EXPECT_EQ(s->next_token_count(), 5 * 4 * 6);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(s->phase(), SamplerSession::Phase::kDenoise);
    EXPECT_EQ(s->step(), k);
    DitWorkItem item = s->NextWorkItem();
    EXPECT_FALSE(item.commit_state);
    EXPECT_EQ(item.timestep, s->ModelTimestep(k));
    RunSamplerStep(*model_, one);
    EXPECT_FALSE(s->TakeFinishedBlock().has_value());
  }
  EXPECT_EQ(s->phase(), SamplerSession::Phase::kCachePass);
  DitWorkItem cache = s->NextWorkItem();
  EXPECT_TRUE(cache.commit_state);
  EXPECT_EQ(cache.timestep, 0.0);
  RunSamplerStep(*model_, one);
  auto block0 = s->TakeFinishedBlock();
  ASSERT_TRUE(block0.has_value());
  EXPECT_EQ(block0->sizes(), (at::IntArrayRef{16, 5, 8, 12}));
  EXPECT_FALSE(s->TakeFinishedBlock().has_value());  // taken once
  EXPECT_EQ(s->block(), 1);
  EXPECT_EQ(s->block_begin(), 5);
  EXPECT_EQ(s->next_token_count(), 3 * 4 * 6);
  EXPECT_EQ(s->NextWorkItem().frame_offset, 5);
  EXPECT_EQ(s->ModelTimestep(2), 888);  // bf16-rounded by default
  EXPECT_EQ(s->SigmaRenoise(1), SigmaTable(7.0).Sigma(889));
}

TEST_F(SamplerTest, SameSeedSameLatentsDifferentSeedDifferent) {
  auto a = Session(42, 8);
  auto b = Session(42, 8);
  auto c = Session(43, 8);
  at::Tensor la = GenerateLatents(*model_, *a);
  at::Tensor lb = GenerateLatents(*model_, *b);
  at::Tensor lc = GenerateLatents(*model_, *c);
  EXPECT_EQ(la.sizes(), (at::IntArrayRef{16, 8, 8, 12}));
  EXPECT_TRUE(at::equal(la, lb));
  EXPECT_FALSE(at::allclose(la, lc));
  EXPECT_TRUE(la.isfinite().all().item<bool>());
}

TEST_F(SamplerTest, ExtendAppendsBlocksAndStopEndsAfterTheCurrentBlock) {
  auto s = Session(5, 6);  // [0, 3, 6)
  EXPECT_EQ(s->Extend(7), 2);  // + [6, 9), [9, 12), [12, 13)
  EXPECT_THAT(s->boundaries(), ElementsAre(0, 3, 6, 9, 12, 13));
  SamplerSession* one[] = {s.get()};
  for (int k = 0; k < 5; ++k) RunSamplerStep(*model_, one);  // finish block 0
  EXPECT_EQ(s->block(), 1);
  EXPECT_EQ(s->StopAfterCurrentBlock(), 1);
  EXPECT_THAT(s->boundaries(), ElementsAre(0, 3, 6));
  for (int k = 0; k < 5; ++k) RunSamplerStep(*model_, one);
  EXPECT_TRUE(s->done());
  // Extending a finished session resumes it at the next block.
  EXPECT_EQ(s->Extend(3), 2);
  EXPECT_FALSE(s->done());
  EXPECT_EQ(s->block(), 2);
  EXPECT_EQ(s->NextWorkItem().frame_offset, 6);
}

}  // namespace
}  // namespace longsana::engine
