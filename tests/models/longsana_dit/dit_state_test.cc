// The DiT's session state: size known before allocation, constant over long videos, the
// sliding window, rewinding for recache, and batch invariance of the forward.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/model_directory.h"
#include "engine/sampler/longlive_sampler.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

class DitStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ModelDirectory::Open(longsana::testing::TinyModelDir());
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto model = DitModel::Load(*dir, DitOptions{});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  // A random caption [L, C] with `valid` unmasked tokens.
  std::pair<at::Tensor, at::Tensor> Caption(uint64_t seed, int64_t valid = 7) {
    at::Generator g = at::detail::createCPUGenerator(seed);
    at::Tensor caption = at::randn({24, model_->config().caption_channels}, g, at::kFloat);
    at::Tensor mask = at::zeros({24}, at::kLong);
    mask.slice(0, 0, valid).fill_(1);
    return {caption, mask};
  }

  std::unique_ptr<SamplerSession> Session(uint64_t seed, int64_t latent_frames,
                                          SamplerOptions options = {}) {
    auto [caption, mask] = Caption(seed);
    return std::make_unique<SamplerSession>(*model_, options, latent_frames, 8, 12, caption, mask,
                                            std::make_unique<SeededNoise>(seed));
  }

  std::unique_ptr<DitModel> model_;
};

// Bit-for-bit batch invariance over shapes, batch sizes, caption masks and timesteps. (An
// 8x8 latent once exposed a BLAS call whose operand layout depended on the batch size.)
TEST_F(DitStateTest, BatchedOutputsAreBitIdenticalAcrossShapesMasksAndTimesteps) {
  for (int64_t frames : {3, 11}) {
    for (int64_t width : {8, 12}) {
      for (int batch : {2, 4}) {
        std::vector<std::unique_ptr<DitSessionState>> states;
        std::vector<DitWorkItem> items;
        at::Generator g = at::detail::createCPUGenerator(frames * 100 + width * 10 + batch);
        for (int i = 0; i < batch; ++i) {
          states.push_back(model_->NewState(model_->StateSpec(8, width, -1)));
          DitWorkItem item;
          item.latent = at::randn({16, frames, 8, width}, g);
          item.caption = at::randn({24, 48}, g);
          item.caption_mask = at::zeros({24}, at::kLong);
          item.caption_mask.slice(0, 0, 5 + 4 * i).fill_(1);
          item.timestep = 1000 - 40 * i;
          item.frame_offset = 3 * i;
          item.state = states.back().get();
          items.push_back(item);
        }
        at::Tensor batched = model_->Forward(items);
        for (int i = 0; i < batch; ++i) {
          at::Tensor alone = model_->Forward({&items[i], 1});
          EXPECT_TRUE(at::equal(batched[i], alone[0]))
              << "frames " << frames << " width " << width << " batch " << batch << " item " << i;
        }
      }
    }
  }
}

TEST_F(DitStateTest, BytesAreKnownBeforeAllocation) {
  for (int window : {-1, 1, 3}) {
    for (bool recache : {false, true}) {
      DitStateSpec spec = model_->StateSpec(8, 12, window, recache);
      auto state = model_->NewState(spec);
      EXPECT_EQ(state->bytes(), spec.bytes()) << window << " " << recache;
    }
  }
  // The real 2B config at 832x480 (latent 60x104, 1560 tokens per frame), bf16 activations:
  // S and z of 20 layers x 20 heads (base + last) and one 1560 x 2240 conv frame per layer.
  auto config = DitConfig::FromFile(
      longsana::testing::TestdataPath("longsana-2b-configs/transformer/config.json"));
  ASSERT_TRUE(config.ok());
  DitStateSpec real = DitStateSpec::For(*config, 60, 104, -1, at::kBFloat16);
  EXPECT_EQ(real.tokens_per_frame, 1560);
  EXPECT_EQ(real.bytes(), 20 * (2 * 20 * (112 * 112 + 112) * 4 + 1560 * 2240 * 2));
  EXPECT_EQ(real.bytes(), 180'275'200);
}

TEST_F(DitStateTest, MemoryIsConstantOverFiftyBlocks) {
  SamplerOptions options;
  options.block_frames = 2;
  auto session = Session(7, /*latent_frames=*/100, options);
  ASSERT_EQ(session->num_blocks(), 50);
  SamplerSession* one[] = {session.get()};
  int64_t bytes_after_block_2 = -1;
  int64_t finished = 0;
  while (!session->done()) {
    RunSamplerStep(*model_, one);
    if (session->TakeFinishedBlock()) {
      ++finished;
      if (finished == 2) bytes_after_block_2 = session->state().bytes();
    }
  }
  EXPECT_EQ(finished, 50);
  EXPECT_EQ(session->state().committed_blocks(), 50);
  EXPECT_EQ(session->state().bytes(), bytes_after_block_2);
  EXPECT_EQ(session->state().bytes(), session->state().spec().bytes());
}

// With num_cached_blocks = 2, block j reads exactly own(j-2) + own(j-1).
TEST_F(DitStateTest, WindowReadsTheSumOfTheLastTwoBlocks) {
  SamplerOptions options;
  options.block_frames = 2;
  options.num_cached_blocks = 2;
  auto session = Session(11, /*latent_frames=*/10, options);
  std::vector<std::vector<at::Tensor>> own_s, own_z, read_s, read_z;
  const int64_t layers = model_->config().num_layers;
  session->set_observer([&](const ForwardRecord& r) {
    std::vector<at::Tensor> s, z;
    if (r.step == 0) {
      for (int64_t l = 0; l < layers; ++l) {
        s.push_back(r.state->ContextS(l).clone());
        z.push_back(r.state->ContextZ(l).clone());
      }
      read_s.push_back(s);
      read_z.push_back(z);
    } else if (r.step < 0) {
      for (int64_t l = 0; l < layers; ++l) {
        s.push_back(r.state->LastS(l).clone());
        z.push_back(r.state->LastZ(l).clone());
      }
      own_s.push_back(s);
      own_z.push_back(z);
    }
  });
  GenerateLatents(*model_, *session);
  ASSERT_EQ(own_s.size(), 5u);
  ASSERT_EQ(read_s.size(), 5u);
  for (int64_t l = 0; l < layers; ++l) {
    EXPECT_EQ(read_s[0][l].abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(at::equal(read_s[1][l], own_s[0][l]));
    for (size_t j = 2; j < 5; ++j) {
      EXPECT_TRUE(at::equal(read_s[j][l], own_s[j - 2][l] + own_s[j - 1][l])) << j;
      EXPECT_TRUE(at::equal(read_z[j][l], own_z[j - 2][l] + own_z[j - 1][l])) << j;
      EXPECT_GT(own_s[j][l].abs().max().item<float>(), 0.0f);
    }
  }
}

// Global context reads the running sum in block order.
TEST_F(DitStateTest, GlobalContextIsTheRunningSum) {
  SamplerOptions options;
  options.block_frames = 2;
  auto session = Session(5, /*latent_frames=*/8, options);
  std::vector<at::Tensor> own, read;
  session->set_observer([&](const ForwardRecord& r) {
    if (r.step == 0) read.push_back(r.state->ContextS(1).clone());
    if (r.step < 0) own.push_back(r.state->LastS(1).clone());
  });
  GenerateLatents(*model_, *session);
  ASSERT_EQ(own.size(), 4u);
  at::Tensor sum = own[0].clone();
  for (size_t j = 1; j < 4; ++j) {
    EXPECT_TRUE(at::equal(read[j], sum)) << j;
    sum = sum + own[j];
  }
}

// Rewinding the last block and committing the same contributions again restores the state.
TEST_F(DitStateTest, RewindAndRecommitIsExact) {
  for (int window : {-1, 2}) {
    DitStateSpec spec = model_->StateSpec(8, 12, window, /*keep_recache_context=*/true);
    auto state = model_->NewState(spec);
    std::vector<DitLayerContribution> blocks;
    at::Generator g = at::detail::createCPUGenerator(3);
    for (int b = 0; b < 4; ++b) {
      DitLayerContribution c{at::randn({2, 32, 32}, g), at::randn({2, 32}, g),
                             at::randn({24, 64}, g)};
      for (int64_t l = 0; l < spec.num_layers; ++l) state->Commit(l, c);
      state->FinishCommit();
      blocks.push_back(c);
    }
    const at::Tensor s_before = state->ContextS(0), z_before = state->ContextZ(0);
    const at::Tensor conv_before = state->ContextConv(0).clone();
    ASSERT_TRUE(state->CanRewind());
    state->RewindLastBlock();
    EXPECT_EQ(state->committed_blocks(), 3);
    // The rewound context is what block 3 originally read.
    at::Tensor expect = window < 0 ? (blocks[0].s + blocks[1].s) + blocks[2].s
                                   : blocks[1].s + blocks[2].s;
    EXPECT_TRUE(at::equal(state->ContextS(0), expect)) << window;
    EXPECT_TRUE(at::equal(state->ContextConv(0), blocks[2].conv)) << window;
    for (int64_t l = 0; l < spec.num_layers; ++l) state->Commit(l, blocks[3]);
    state->FinishCommit();
    EXPECT_TRUE(at::equal(state->ContextS(0), s_before)) << window;
    EXPECT_TRUE(at::equal(state->ContextZ(0), z_before)) << window;
    EXPECT_TRUE(at::equal(state->ContextConv(0), conv_before)) << window;
  }
  auto plain = model_->NewState(model_->StateSpec(8, 12, -1, /*keep_recache_context=*/false));
  EXPECT_FALSE(plain->CanRewind());
}

// Three sessions at different blocks, steps (one in its cache pass), frame offsets and
// captions in one forward equal each run alone, bit for bit.
TEST_F(DitStateTest, BatchedForwardEqualsEachSessionAlone) {
  SamplerOptions options;
  options.block_frames = 3;
  auto make_set = [&] {
    std::vector<std::unique_ptr<SamplerSession>> set;
    set.push_back(Session(1, 9, options));
    set.push_back(Session(2, 9, options));
    set.push_back(Session(3, 9, options));
    // Advance alone to: A block 0 step 0, B block 1 step 2, C block 2 cache pass.
    const int advance[] = {0, 5 + 2, 10 + 4};
    for (int i = 0; i < 3; ++i) {
      SamplerSession* one[] = {set[i].get()};
      for (int k = 0; k < advance[i]; ++k) RunSamplerStep(*model_, one);
    }
    return set;
  };
  auto batched = make_set();
  auto alone = make_set();
  ASSERT_EQ(batched[1]->block(), 1);
  ASSERT_EQ(batched[1]->step(), 2);
  ASSERT_EQ(batched[2]->phase(), SamplerSession::Phase::kCachePass);
  ASSERT_EQ(batched[0]->next_token_count(), batched[2]->next_token_count());

  std::vector<DitWorkItem> items;
  for (auto& s : batched) items.push_back(s->NextWorkItem());
  at::Tensor v_batched = model_->Forward(items);
  for (int i = 0; i < 3; ++i) {
    DitWorkItem item = alone[i]->NextWorkItem();
    at::Tensor v_alone = model_->Forward({&item, 1});
    EXPECT_TRUE(at::equal(v_batched[i], v_alone[0])) << i;  // bit for bit
  }
  // The cache-pass item committed the same state either way.
  for (int64_t l = 0; l < model_->config().num_layers; ++l) {
    EXPECT_TRUE(at::equal(batched[2]->state().ContextS(l), alone[2]->state().ContextS(l)));
    EXPECT_TRUE(at::equal(batched[2]->state().ContextConv(l), alone[2]->state().ContextConv(l)));
  }
}

}  // namespace
}  // namespace longsana::engine
