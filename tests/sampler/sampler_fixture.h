// The tiny checkpoint's DiT (fp32, CPU) with a random caption, and sampler sessions over it
// (8x12 latents, 3-frame blocks). Shared by the sampler suites.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <memory>

#include "engine/models/model_directory.h"
#include "engine/sampler/longlive_sampler.h"
#include "tests/common/testdata.h"

namespace longsana::engine {

class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ModelDirectory::Open(longsana::testing::TinyModelDir());
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto model = DitModel::Load(*dir, DitOptions{});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    at::Generator g = at::detail::createCPUGenerator(99);
    caption_ = at::randn({24, 48}, g);
    mask_ = at::ones({24}, at::kLong);
  }

  std::unique_ptr<SamplerSession> Session(uint64_t seed, int64_t frames, SamplerOptions o = {},
                                          bool interactive = false) {
    o.block_frames = 3;
    return std::make_unique<SamplerSession>(*model_, o, frames, 8, 12, caption_, mask_,
                                            std::make_unique<SeededNoise>(seed), interactive);
  }

  std::unique_ptr<DitModel> model_;
  at::Tensor caption_, mask_;
};

}  // namespace longsana::engine
