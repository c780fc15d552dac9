// The tiny checkpoint in the real diffusers layout loads; parameter tables match the files
// and _summary.json; the real 2B DiT's size follows from its config alone; sharded
// checkpoints load; strict checks report every problem at once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/common/json_fields.h"
#include "engine/loader/checkpoint.h"
#include "engine/loader/param_spec.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/model_directory.h"
#include "engine/models/model_summary.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "tests/common/safetensors_writer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TempDir;
using ::longsana::testing::TestdataPath;
using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

int64_t SummaryCount(const std::string& key) {
  auto summary = ReadJsonObjectFile(TestdataPath("goldens/_summary.json"));
  EXPECT_TRUE(summary.ok()) << summary.status();
  return (*summary)["param_counts"][key].get<int64_t>();
}

TEST(ModelDirectory, TinyCheckpointOpensWithAllConfigs) {
  auto dir = ModelDirectory::Open(TinyModelDir());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->index.class_name, "LongSanaVideoPipeline");
  EXPECT_EQ(dir->transformer.hidden_size(), 64);
  EXPECT_EQ(dir->transformer.num_layers, 2);
  EXPECT_EQ(dir->transformer.ffn_hidden(), 192);
  EXPECT_EQ(dir->vae.decoder_dims(), (std::vector<int64_t>{32, 32, 32, 16, 8}));
  EXPECT_EQ(dir->vae.temporal_stride(), 4);
  EXPECT_EQ(dir->vae.spatial_stride(), 8);
  EXPECT_EQ(dir->text_encoder.hidden_size, 48);
  ASSERT_TRUE(dir->text_encoder.attn_logit_softcapping.has_value());
  EXPECT_EQ(*dir->text_encoder.attn_logit_softcapping, 50.0);
  EXPECT_EQ(dir->tokenizer.pad_token, "<pad>");
  EXPECT_EQ(dir->scheduler.num_train_timesteps, 1000);
}

TEST(ModelDirectory, ParameterCountsEqualSummary) {
  auto dir = ModelDirectory::Open(TinyModelDir());
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto summary = SummarizeModel(*dir);
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::map<std::string, const ComponentSummary*> by_name;
  for (const auto& c : summary->components) by_name[c.name] = &c;
  EXPECT_EQ(by_name.at("transformer")->num_params, SummaryCount("transformer"));
  EXPECT_EQ(by_name.at("text_encoder")->num_params, SummaryCount("text_encoder"));
  EXPECT_EQ(by_name.at("vae")->num_params, SummaryCount("vae"));
  EXPECT_EQ(SummaryCount("transformer"), 235584);
  EXPECT_EQ(SummaryCount("text_encoder"), 103728);
  EXPECT_EQ(SummaryCount("vae"), 924491);
  // The parameter tables derived from the configs.
  EXPECT_EQ(CountParams(DitParamSpecs(dir->transformer)), SummaryCount("transformer"));
  EXPECT_EQ(CountParams(Gemma2ParamSpecs(dir->text_encoder)), SummaryCount("text_encoder"));
  EXPECT_EQ(CountParams(WanVaeDecoderParamSpecs(dir->vae)),
            SummaryCount("vae_decoder_plus_post_quant"));
  for (const auto& c : summary->components) EXPECT_EQ(c.check, "OK") << c.name;
  EXPECT_EQ(by_name.at("transformer")->params_by_dtype.at("F32"), 235584);
  EXPECT_EQ(by_name.at("transformer")->num_bytes, 235584u * 4);
  const std::string table = FormatModelSummary(*summary);
  EXPECT_THAT(table, HasSubstr("235,584"));
  EXPECT_THAT(table, HasSubstr("SanaVideoTransformer3DModel"));
}

TEST(ModelDirectory, Real2BDitParameterCountFromConfigAlone) {
  auto config = DitConfig::FromFile(TestdataPath("longsana-2b-configs/transformer/config.json"));
  ASSERT_TRUE(config.ok()) << config.status();
  const ParamSpecs specs = DitParamSpecs(*config);
  EXPECT_EQ(CountParams(specs), 2'056'862'144);  // model.md §3.4
  int64_t block0 = 0;
  for (const auto& s : specs) {
    if (s.name.starts_with("transformer_blocks.0.")) block0 += s.numel();
  }
  EXPECT_EQ(block0, 100'533'440);
}

TEST(ModelDirectory, RealConfigsParse) {
  auto vae = WanVaeConfig::FromFile(TestdataPath("longsana-2b-configs/vae/config.json"));
  ASSERT_TRUE(vae.ok()) << vae.status();
  EXPECT_EQ(vae->decoder_dims(), (std::vector<int64_t>{384, 384, 384, 192, 96}));
  auto gemma = Gemma2Config::FromFile(TestdataPath("longsana-2b-configs/text_encoder/config.json"));
  ASSERT_TRUE(gemma.ok()) << gemma.status();
  // model.md §2.3: ≈2.614 B parameters.
  EXPECT_EQ(CountParams(Gemma2ParamSpecs(*gemma)), 2'614'341'888);
}

// Splits the tiny transformer into two shards with an index and loads it back.
TEST(ModelDirectory, ShardedCheckpointLoadsLikeTheSingleFile) {
  auto single = Checkpoint::OpenFile(TinyModelDir() +
                                     "/transformer/diffusion_pytorch_model.safetensors");
  ASSERT_TRUE(single.ok()) << single.status();
  std::vector<testing::FakeTensor> shard[2];
  nlohmann::json weight_map = nlohmann::json::object();
  int i = 0;
  for (const auto& [name, entry] : (*single)->entries()) {
    auto bytes = (*single)->Bytes(entry);
    const int s = (i++ % 2);
    shard[s].push_back({name, std::string(DTypeName(entry.info->dtype)), entry.info->shape,
                        std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())});
    weight_map[name] = s == 0 ? "diffusion_pytorch_model-00001-of-00002.safetensors"
                              : "diffusion_pytorch_model-00002-of-00002.safetensors";
  }
  TempDir dir;
  testing::WriteFile(dir.File("diffusion_pytorch_model-00001-of-00002.safetensors"),
                     testing::BuildSafetensors(shard[0]));
  testing::WriteFile(dir.File("diffusion_pytorch_model-00002-of-00002.safetensors"),
                     testing::BuildSafetensors(shard[1]));
  nlohmann::json index = {{"metadata", {{"total_size", (*single)->num_bytes()}}},
                          {"weight_map", weight_map}};
  testing::WriteFile(dir.File("diffusion_pytorch_model.safetensors.index.json"), index.dump(2));

  auto sharded = Checkpoint::OpenDirectory(dir.path());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ((*sharded)->files().size(), 2u);
  EXPECT_EQ((*sharded)->num_params(), (*single)->num_params());
  for (const auto& [name, entry] : (*single)->entries()) {
    const Checkpoint::Entry* other = (*sharded)->Find(name);
    ASSERT_NE(other, nullptr) << name;
    auto a = (*single)->Bytes(entry);
    auto b = (*sharded)->Bytes(*other);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << name;
  }
  auto config = DitConfig::FromFile(TinyModelDir() + "/transformer/config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(CheckStrict(DitParamSpecs(*config), **sharded, "transformer").ok());
}

TEST(ModelDirectory, StrictCheckListsEveryProblemAtOnce) {
  auto ckpt = Checkpoint::OpenFile(TinyModelDir() +
                                   "/transformer/diffusion_pytorch_model.safetensors");
  ASSERT_TRUE(ckpt.ok());
  auto config = DitConfig::FromFile(TinyModelDir() + "/transformer/config.json");
  ASSERT_TRUE(config.ok());
  ParamSpecs specs = DitParamSpecs(*config);
  // Two expected keys the file lacks, one the file has that we drop, two wrong shapes.
  specs.push_back({"extra.one", {3}});
  specs.push_back({"extra.two", {4, 4}});
  specs.erase(std::remove_if(specs.begin(), specs.end(),
                             [](const ParamSpec& s) { return s.name == "caption_norm.weight"; }),
              specs.end());
  for (auto& s : specs) {
    if (s.name == "proj_out.bias" || s.name == "transformer_blocks.1.scale_shift_table") {
      s.shape[0] += 1;
    }
  }
  absl::Status status = CheckStrict(specs, **ckpt, "transformer");
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(status.message());
  EXPECT_THAT(msg, HasSubstr("2 missing, 1 unexpected, 2 mis-shaped"));
  EXPECT_THAT(msg, HasSubstr("extra.one [3]"));
  EXPECT_THAT(msg, HasSubstr("extra.two [4, 4]"));
  EXPECT_THAT(msg, HasSubstr("caption_norm.weight [64]"));
  EXPECT_THAT(msg, HasSubstr("proj_out.bias: expected [65], got [64]"));
  EXPECT_THAT(msg, HasSubstr("transformer_blocks.1.scale_shift_table: expected [7, 64], got [6, 64]"));
}

TEST(ModelDirectory, GemmaCausalLmPrefixIsDetected) {
  auto ckpt = Checkpoint::OpenFile(TinyModelDir() + "/text_encoder/model.safetensors");
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(Gemma2KeyPrefix(**ckpt), "");
  // Re-save with the "model." prefix and an lm_head, as in google/gemma-2-2b-it.
  std::vector<testing::FakeTensor> tensors;
  for (const auto& [name, entry] : (*ckpt)->entries()) {
    auto bytes = (*ckpt)->Bytes(entry);
    tensors.push_back({"model." + name, "F32", entry.info->shape,
                       std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())});
  }
  tensors.push_back({"lm_head.weight", "F32", {1}, testing::FloatBytes({0})});
  TempDir dir;
  testing::WriteFile(dir.File("model.safetensors"), testing::BuildSafetensors(tensors));
  auto prefixed = Checkpoint::OpenDirectory(dir.path());
  ASSERT_TRUE(prefixed.ok());
  EXPECT_EQ(Gemma2KeyPrefix(**prefixed), "model.");
  auto config = Gemma2Config::FromFile(TinyModelDir() + "/text_encoder/config.json");
  StrictCheckOptions options{"model.", IsGemma2IgnoredKey};
  EXPECT_TRUE(CheckStrict(Gemma2ParamSpecs(*config), **prefixed, "text_encoder", options).ok());
}

}  // namespace
}  // namespace longsana::engine
