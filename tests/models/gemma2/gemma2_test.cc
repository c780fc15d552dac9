// Gemma2Encoder: parity with the goldens (SDPA default, eager with the soft-cap), both
// checkpoint layouts (plain and `model.`-prefixed causal-LM with lm_head, single file and
// sharded), strict loading, masking properties, and the CUDA path when a GPU is present.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/loader/checkpoint.h"
#include "engine/loader/weights.h"
#include "engine/models/gemma2/gemma2_model.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/model_directory.h"
#include "engine/parity/golden.h"
#include "engine/parity/text_parity.h"
#include "tests/common/safetensors_writer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::BuildSafetensors;
using ::longsana::testing::FakeTensor;
using ::longsana::testing::GoldenPath;
using ::longsana::testing::TempDir;
using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

ParityReport RunParity(bool softcap, const std::string& device = "cpu",
                       ParityDtype dtype = ParityDtype::kFloat32) {
  ParityOptions options;
  options.dtype = dtype;
  options.model_dir = TinyModelDir();
  options.golden_path = GoldenPath("gemma2");
  options.softcap = softcap;
  options.verbose = true;
  options.device = device;
  auto report = RunGemma2Parity(options);
  EXPECT_TRUE(report.ok()) << report.status();
  if (!report.ok()) return {};
  std::cout << FormatParityReport(*report);
  return *report;
}

TEST(Gemma2Parity, SdpaDefaultMatchesGolden) {
  ParityReport report = RunParity(/*softcap=*/false);
  EXPECT_TRUE(report.ok());
  // simple, layer0_input, chi, caption, caption_mask
  EXPECT_EQ(report.rows.size(), 5u);
}

TEST(Gemma2Parity, EagerSoftcapMatchesGolden) {
  ParityReport report = RunParity(/*softcap=*/true);
  EXPECT_TRUE(report.ok());
  // simple, layer0/1 inputs, chi, caption, caption_mask
  EXPECT_EQ(report.rows.size(), 6u);
}

// bf16 weights and activations (the CUDA serving dtype) on CPU, against the fp32 goldens with
// the bf16 tolerances; an fp32 run is ~1e-6 off, so the errors prove bf16 ran.
TEST(Gemma2Parity, Bf16WithinTheBf16Tolerances) {
  for (bool softcap : {false, true}) {
    ParityReport report = RunParity(softcap, "cpu", ParityDtype::kBFloat16);
    EXPECT_TRUE(report.ok()) << "softcap " << softcap;
    ASSERT_FALSE(report.rows.empty());
    EXPECT_GT(report.rows.front().rel_rms, 1e-4) << report.rows.front().name << " looks fp32";
  }
}

class Gemma2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ModelDirectory::Open(TinyModelDir());
    ASSERT_TRUE(dir.ok()) << dir.status();
    config_ = dir->text_encoder;
    auto ckpt = dir->OpenWeights("text_encoder");
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    checkpoint_ = std::move(*ckpt);
    auto golden = GoldenFile::Open(GoldenPath("gemma2"));
    ASSERT_TRUE(golden.ok());
    ids_ = *golden->Get("simple/input_ids");
    mask_ = *golden->Get("simple/attention_mask");
    expected_ = *golden->Get("simple/last_hidden_state_sdpa");
  }

  std::unique_ptr<Gemma2Encoder> LoadFrom(const Checkpoint& ckpt, const Gemma2Config& config,
                                          Gemma2Options options = {}) {
    auto encoder = Gemma2Encoder::Load(config, ckpt, options);
    EXPECT_TRUE(encoder.ok()) << encoder.status();
    return encoder.ok() ? std::move(*encoder) : nullptr;
  }

  // The tiny checkpoint's tensors, renamed by `rename`, plus `extra`.
  std::vector<FakeTensor> Tensors(const std::function<std::string(const std::string&)>& rename,
                                  std::vector<FakeTensor> extra = {}) {
    std::vector<FakeTensor> out;
    for (const auto& [name, entry] : checkpoint_->entries()) {
      std::span<const uint8_t> bytes = checkpoint_->Bytes(entry);
      out.push_back({rename(name), "F32", entry.info->shape,
                     std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size())});
    }
    for (auto& e : extra) out.push_back(std::move(e));
    return out;
  }

  Gemma2Config config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  at::Tensor ids_, mask_, expected_;
};

TEST_F(Gemma2Test, NamedParametersEqualCheckpointKeys) {
  auto encoder = LoadFrom(*checkpoint_, config_);
  ASSERT_NE(encoder, nullptr);
  std::vector<std::string> file_keys, param_keys;
  for (const auto& [k, e] : checkpoint_->entries()) file_keys.push_back(k);
  for (const auto& [k, t] : encoder->named_parameters()) param_keys.push_back(k);
  EXPECT_EQ(param_keys, file_keys);
  EXPECT_EQ(encoder->num_params(), CountParams(Gemma2ParamSpecs(config_)));
  EXPECT_EQ(encoder->num_params(), checkpoint_->num_params());
  EXPECT_EQ(encoder->dtype(), at::kFloat);
  EXPECT_FALSE(encoder->softcap());
}

TEST_F(Gemma2Test, CausalLmLayoutWithModelPrefixAndLmHead) {
  TempDir tmp;
  const int64_t v = config_.vocab_size, h = config_.hidden_size;
  const auto lm_head = FakeTensor{"lm_head.weight", "F32", {v, h}, std::string(v * h * 4, '\0')};
  testing::WriteFile(
      tmp.File("model.safetensors"),
      BuildSafetensors(Tensors([](const std::string& k) { return "model." + k; }, {lm_head})));
  auto ckpt = Checkpoint::OpenDirectory(tmp.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(Gemma2KeyPrefix(**ckpt), "model.");
  auto encoder = LoadFrom(**ckpt, config_);
  ASSERT_NE(encoder, nullptr);
  auto reference = LoadFrom(*checkpoint_, config_);
  EXPECT_TRUE(at::equal(encoder->Forward(ids_, mask_), reference->Forward(ids_, mask_)));
}

TEST_F(Gemma2Test, ShardedCheckpoint) {
  TempDir tmp;
  std::vector<FakeTensor> all = Tensors([](const std::string& k) { return k; });
  std::vector<FakeTensor> first(all.begin(), all.begin() + all.size() / 2);
  std::vector<FakeTensor> second(all.begin() + all.size() / 2, all.end());
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  for (const auto& t : first) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : second) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  testing::WriteFile(tmp.File("model-00001-of-00002.safetensors"), BuildSafetensors(first));
  testing::WriteFile(tmp.File("model-00002-of-00002.safetensors"), BuildSafetensors(second));
  testing::WriteFile(tmp.File("model.safetensors.index.json"), index.dump());
  auto ckpt = Checkpoint::OpenDirectory(tmp.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), 2u);
  auto encoder = LoadFrom(**ckpt, config_);
  ASSERT_NE(encoder, nullptr);
  Comparison c = CompareTensors("sharded", encoder->Forward(ids_, mask_), expected_,
                                Tolerance::Close(2e-4, 1e-4));
  EXPECT_TRUE(c.pass) << c.max_abs;
}

TEST_F(Gemma2Test, MismatchedCheckpointListsEveryProblem) {
  Gemma2Config wider = config_;
  wider.num_hidden_layers = 3;
  wider.intermediate_size = 64;
  auto encoder = Gemma2Encoder::Load(wider, *checkpoint_, {});
  ASSERT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(encoder.status().message());
  EXPECT_THAT(message, HasSubstr("layers.2.self_attn.q_proj.weight"));
  EXPECT_THAT(message, HasSubstr("layers.0.mlp.gate_proj.weight"));
  EXPECT_THAT(message, HasSubstr("layers.1.mlp.down_proj.weight"));
}

TEST_F(Gemma2Test, FromParametersValidatesNamesAndShapes) {
  Gemma2Parameters params;
  for (const ParamSpec& spec : Gemma2ParamSpecs(config_)) {
    params[spec.name] = at::zeros(spec.shape);
  }
  params.erase("norm.weight");
  params["layers.0.mlp.up_proj.weight"] = at::zeros({3, 3});
  params["lm_head.weight"] = at::zeros({1});
  auto encoder = Gemma2Encoder::FromParameters(config_, params, {});
  ASSERT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(encoder.status().message());
  EXPECT_THAT(message, HasSubstr("missing: norm.weight"));
  EXPECT_THAT(message, HasSubstr("mis-shaped: layers.0.mlp.up_proj.weight"));
  EXPECT_THAT(message, HasSubstr("unexpected: lm_head.weight"));

  Gemma2Options int_dtype;
  int_dtype.dtype = at::kInt;
  params.erase("lm_head.weight");
  params["norm.weight"] = at::zeros({config_.hidden_size});
  params["layers.0.mlp.up_proj.weight"] =
      at::zeros({config_.intermediate_size, config_.hidden_size});
  EXPECT_TRUE(Gemma2Encoder::FromParameters(config_, params, {}).ok());
  EXPECT_EQ(Gemma2Encoder::FromParameters(config_, params, int_dtype).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(Gemma2Test, BatchRowsAreIndependentAndPaddingOnlyHidesKeys) {
  auto encoder = LoadFrom(*checkpoint_, config_);
  ASSERT_NE(encoder, nullptr);
  at::Tensor batch = encoder->Forward(ids_, mask_);
  // Row 1 alone, unpadded: its valid positions equal the padded batch's (causal prefix).
  const int64_t valid = mask_[1].sum().item<int64_t>();
  at::Tensor alone =
      encoder->Forward(ids_.narrow(0, 1, 1).narrow(1, 0, valid), at::ones({1, valid}, at::kLong));
  EXPECT_TRUE(at::allclose(alone[0], batch[1].narrow(0, 0, valid), 1e-5, 1e-5));
  // Row 0 alone equals row 0 of the batch.
  at::Tensor row0 = encoder->Forward(ids_.narrow(0, 0, 1), mask_.narrow(0, 0, 1));
  EXPECT_TRUE(at::allclose(row0[0], batch[0], 1e-5, 1e-5));
  // A boolean or float mask means the same as the int64 one.
  EXPECT_TRUE(at::equal(encoder->Forward(ids_, mask_.to(at::kBool)), batch));
  EXPECT_TRUE(at::equal(encoder->Forward(ids_, mask_.to(at::kFloat)), batch));
}

TEST_F(Gemma2Test, FullyMaskedRowStaysFinite) {
  // HF fills hidden entries with finfo.min, not -inf: a row with no visible key attends
  // uniformly instead of producing NaN.
  auto encoder = LoadFrom(*checkpoint_, config_);
  ASSERT_NE(encoder, nullptr);
  at::Tensor out = encoder->Forward(ids_, at::zeros_like(mask_));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST_F(Gemma2Test, SlidingWindowHidesOnlyDistantKeys) {
  auto reference = LoadFrom(*checkpoint_, config_);
  Gemma2Config windowed = config_;
  windowed.sliding_window = 4;
  auto encoder = LoadFrom(*checkpoint_, windowed);
  ASSERT_NE(reference, nullptr);
  ASSERT_NE(encoder, nullptr);
  at::Tensor ones = at::ones_like(mask_);
  at::Tensor a = reference->Forward(ids_, ones);
  at::Tensor b = encoder->Forward(ids_, ones);
  // Positions 0..3 see at most 4 keys: unchanged. Later positions lose keys on layer 0.
  EXPECT_TRUE(at::equal(a.narrow(1, 0, 4), b.narrow(1, 0, 4)));
  const int64_t s = ids_.size(1);
  EXPECT_FALSE(at::allclose(a.narrow(1, 4, s - 4), b.narrow(1, 4, s - 4)));
}

TEST_F(Gemma2Test, RejectsBadInputs) {
  auto encoder = LoadFrom(*checkpoint_, config_);
  ASSERT_NE(encoder, nullptr);
  EXPECT_THROW(encoder->Forward(ids_.clone().fill_(config_.vocab_size), mask_), c10::Error);
  EXPECT_THROW(encoder->Forward(ids_.clone().fill_(-1), mask_), c10::Error);
  EXPECT_THROW(encoder->Forward(ids_, mask_.narrow(1, 0, 2)), c10::Error);
  EXPECT_THROW(encoder->Forward(ids_[0], mask_[0]), c10::Error);
  EXPECT_THROW(encoder->Forward(ids_.to(at::kFloat), mask_), c10::Error);
}

TEST(Gemma2Cuda, ParityAndBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (ParityDtype dtype : {ParityDtype::kFloat32, ParityDtype::kBFloat16}) {
    EXPECT_TRUE(RunParity(/*softcap=*/false, "cuda", dtype).ok());
    EXPECT_TRUE(RunParity(/*softcap=*/true, "cuda", dtype).ok());
  }
  // Unset, the serving dtype on CUDA is bf16.
  auto dir = ModelDirectory::Open(TinyModelDir());
  ASSERT_TRUE(dir.ok());
  Gemma2Options options;
  options.device = at::Device(at::kCUDA);
  auto encoder = Gemma2Encoder::Load(*dir, options);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->dtype(), at::kBFloat16);
}

}  // namespace
}  // namespace longsana::engine
