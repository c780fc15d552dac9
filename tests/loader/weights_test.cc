// Strict loading into at::Tensor: names equal the file's keys, values and dtype conversion
// are exact, and a mismatched checkpoint fails with every problem listed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/loader/weights.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

TEST(Weights, TinyTransformerLoadsStrictly) {
  auto ckpt = Checkpoint::OpenDirectory(TinyModelDir() + "/transformer");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto config = DitConfig::FromFile(TinyModelDir() + "/transformer/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  auto weights = Weights::Load(DitParamSpecs(*config), **ckpt, "transformer");
  ASSERT_TRUE(weights.ok()) << weights.status();

  // named_parameters() equals the file's keys.
  std::vector<std::string> file_keys, param_keys;
  for (const auto& [k, e] : (*ckpt)->entries()) file_keys.push_back(k);
  for (const auto& [k, t] : weights->named_parameters()) param_keys.push_back(k);
  EXPECT_EQ(param_keys, file_keys);
  EXPECT_EQ(weights->num_params(), 235584);

  // Values are the file's bytes.
  const at::Tensor& w = weights->Get("proj_out.weight");
  EXPECT_EQ(w.sizes(), (at::IntArrayRef{64, 64}));
  EXPECT_EQ(w.scalar_type(), at::kFloat);
  at::Tensor raw = ViewTensor(**ckpt, *(*ckpt)->Find("proj_out.weight"));
  EXPECT_TRUE(at::equal(w, raw));
  EXPECT_THROW(weights->Get("no.such.key"), c10::Error);
}

TEST(Weights, ConvertsDtype) {
  auto ckpt = Checkpoint::OpenDirectory(TinyModelDir() + "/transformer");
  ASSERT_TRUE(ckpt.ok());
  auto config = DitConfig::FromFile(TinyModelDir() + "/transformer/config.json");
  WeightLoadOptions bf16;
  bf16.dtype = at::kBFloat16;
  auto weights = Weights::Load(DitParamSpecs(*config), **ckpt, "transformer", bf16);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const at::Tensor& w = weights->Get("caption_norm.weight");
  EXPECT_EQ(w.scalar_type(), at::kBFloat16);
  at::Tensor raw = ViewTensor(**ckpt, *(*ckpt)->Find("caption_norm.weight"));
  EXPECT_TRUE(at::equal(w, raw.to(at::kBFloat16)));
  EXPECT_EQ(weights->num_bytes(), 235584u * 2);
}

TEST(Weights, VaeDecoderIgnoresEncoderKeys) {
  auto ckpt = Checkpoint::OpenDirectory(TinyModelDir() + "/vae");
  ASSERT_TRUE(ckpt.ok());
  auto config = WanVaeConfig::FromFile(TinyModelDir() + "/vae/config.json");
  ASSERT_TRUE(config.ok());
  // Without the ignore rule the encoder keys are unexpected ...
  auto strict = Weights::Load(WanVaeDecoderParamSpecs(*config), **ckpt, "vae");
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(strict.status().message()), HasSubstr("encoder.conv_in.weight"));
  // ... with it, the decoder loads and the encoder is not materialised.
  WeightLoadOptions options;
  options.strict.ignore_unexpected = IsWanVaeEncoderKey;
  auto weights = Weights::Load(WanVaeDecoderParamSpecs(*config), **ckpt, "vae", options);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->num_params(), 524091);
  EXPECT_FALSE(weights->Has("quant_conv.weight"));
}

TEST(Weights, MismatchListsEverything) {
  auto ckpt = Checkpoint::OpenDirectory(TinyModelDir() + "/transformer");
  ASSERT_TRUE(ckpt.ok());
  auto config = DitConfig::FromFile(TinyModelDir() + "/transformer/config.json");
  DitConfig wider = *config;
  wider.num_layers = 3;          // block 2 is missing entirely
  wider.caption_channels = 40;   // caption projection mis-shaped
  auto weights = Weights::Load(DitParamSpecs(wider), **ckpt, "transformer");
  ASSERT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(weights.status().message());
  EXPECT_THAT(msg, HasSubstr("transformer_blocks.2.attn1.to_q.weight"));
  EXPECT_THAT(msg, HasSubstr("transformer_blocks.2.ff.conv_temp.weight"));
  EXPECT_THAT(msg, HasSubstr("caption_projection.linear_1.weight: expected [64, 40], got [64, 48]"));
  EXPECT_THAT(msg, HasSubstr("24 missing, 0 unexpected, 1 mis-shaped"));
}

}  // namespace
}  // namespace longsana::engine
