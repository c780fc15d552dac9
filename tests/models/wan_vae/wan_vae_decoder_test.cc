// Wan VAE decoder: parity with the reference goldens (vae_decode, the VAE half of e2e),
// streaming equivalences (block by block == whole, constant cache bytes), loading and the
// uint8 conversion.
#include "engine/models/wan_vae/wan_vae_decoder.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "engine/models/wan_vae/wan_vae_params.h"
#include "engine/parity/golden.h"
#include "engine/parity/wan_vae_parity.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::GoldenPath;
using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

class WanVaeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One thread: the tiny model's ops are so small that OpenMP hand-offs cost more than
    // they save, especially on a loaded machine.
    at::set_num_threads(1);
    auto dir = ModelDirectory::Open(TinyModelDir());
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new ModelDirectory(*dir);
    auto decoder = WanVaeDecoder::Load(*dir_);
    ASSERT_TRUE(decoder.ok()) << decoder.status();
    decoder_ = decoder->release();
  }
  static void TearDownTestSuite() {
    delete decoder_;
    delete dir_;
  }

  static at::Tensor Golden(const std::string& file, const std::string& name) {
    auto golden = GoldenFile::Open(GoldenPath(file));
    EXPECT_TRUE(golden.ok()) << golden.status();
    auto t = golden->Get(name);
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }

  static std::unique_ptr<WanVaeCache> Cache(const WanVaeDecoder& decoder, int64_t h, int64_t w) {
    auto cache = decoder.NewCache(h, w);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return std::move(*cache);
  }

  // Decodes `z` in consecutive blocks of the given sizes with one cache.
  static at::Tensor DecodeInBlocks(const WanVaeDecoder& decoder, const at::Tensor& z,
                                   const std::vector<int64_t>& sizes) {
    auto cache = Cache(decoder, z.size(3), z.size(4));
    std::vector<at::Tensor> parts;
    int64_t t = 0;
    for (int64_t n : sizes) {
      parts.push_back(decoder.DecodeBlock(z.narrow(2, t, n), cache.get()));
      t += n;
    }
    EXPECT_EQ(t, z.size(2));
    return at::cat(parts, 2);
  }

  static double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
    return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
  }

  static ModelDirectory* dir_;
  static WanVaeDecoder* decoder_;
};

ModelDirectory* WanVaeTest::dir_ = nullptr;
WanVaeDecoder* WanVaeTest::decoder_ = nullptr;

// GOLDENS.md §2.7 through the same runner as `longsana-parity vae`.
TEST_F(WanVaeTest, VaeDecodeGoldenParity) {
  ParityOptions options;
  options.model_dir = TinyModelDir();
  options.golden_path = GoldenPath("vae_decode");
  options.verbose = true;
  auto report = RunVaeParity(options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::printf("%s", FormatParityReport(*report).c_str());
  EXPECT_TRUE(report->ok()) << FormatParityReport(*report);
  ASSERT_EQ(report->rows.size(), 5u);  // dbg/z_vae + 4 out/* rows
}

// --vae-dtype bf16: weights, activations and the session cache in bf16, within the bf16
// tolerances of the fp32 golden (and visibly not fp32).
TEST_F(WanVaeTest, VaeDecodeGoldenParityInBf16WithABf16Cache) {
  ParityOptions options;
  options.model_dir = TinyModelDir();
  options.golden_path = GoldenPath("vae_decode");
  options.dtype = ParityDtype::kBFloat16;
  auto report = RunVaeParity(options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::printf("%s", FormatParityReport(*report).c_str());
  EXPECT_TRUE(report->ok()) << FormatParityReport(*report);
  ASSERT_EQ(report->rows.size(), 4u);
  EXPECT_GT(report->rows[0].rel_rms, 1e-4) << "out/video looks fp32";

  VaeOptions bf16;
  bf16.dtype = at::kBFloat16;
  auto decoder = WanVaeDecoder::Load(*dir_, bf16);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  auto cache = (*decoder)->NewCache(4, 6);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->buffer().scalar_type(), at::kBFloat16);
  EXPECT_EQ((*cache)->bytes() * 2, *decoder_->CacheBytes(4, 6)) << "half the fp32 cache";
}

// The same golden on CUDA, fp32 with TF32 off (the runner turns it off) and bf16.
TEST_F(WanVaeTest, VaeDecodeGoldenParityOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  ParityOptions options;
  options.model_dir = TinyModelDir();
  options.golden_path = GoldenPath("vae_decode");
  options.device = "cuda";
  for (ParityDtype dtype : {ParityDtype::kFloat32, ParityDtype::kBFloat16}) {
    options.dtype = dtype;
    auto report = RunVaeParity(options);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << FormatParityReport(*report);
  }
}

// The VAE half of GOLDENS.md §2.8: latent [1,16,11,8,12] -> video [1,3,41,64,96].
TEST_F(WanVaeTest, E2eGoldenVaePart) {
  const at::Tensor latent = Golden("e2e", "latent");
  const at::Tensor video_ref = Golden("e2e", "video");
  const at::Tensor uint8_ref = Golden("e2e", "video_uint8");
  auto cache = Cache(*decoder_, latent.size(3), latent.size(4));
  const at::Tensor video = decoder_->DecodeBlock(latent, cache.get());
  ASSERT_EQ(video.sizes(), (at::IntArrayRef{1, 3, 41, 64, 96}));
  Comparison c = CompareTensors("video", video, video_ref, Tolerance::Close(1e-4, 1e-4));
  EXPECT_TRUE(c.pass) << c.detail;
  Comparison u = CompareTensors("video_uint8", VideoToUint8Frames(ClampVideo(video)).unsqueeze(0),
                                uint8_ref, Tolerance::Uint8(0.005));
  EXPECT_TRUE(u.pass) << u.detail;
  std::printf("e2e video max_abs=%.3e max_rel=%.3e; video_uint8 max_abs=%.0f (%s)\n", c.max_abs,
              c.max_rel, u.max_abs, u.detail.c_str());
}

// Streaming as the DiT produces blocks (sampler segments [0,5,8,11]) equals the whole
// decode bit for bit: with one latent frame per pass every frame sees identical inputs and
// post_quant_conv runs per frame either way.
TEST_F(WanVaeTest, BlockByBlockEqualsWholeDecode) {
  const at::Tensor latent = Golden("e2e", "latent");
  const at::Tensor whole = DecodeInBlocks(*decoder_, latent, {11});
  const at::Tensor blocks = DecodeInBlocks(*decoder_, latent, {5, 3, 3});
  const at::Tensor singles = DecodeInBlocks(*decoder_, latent, std::vector<int64_t>(11, 1));
  EXPECT_TRUE(at::equal(whole, blocks)) << MaxAbsDiff(whole, blocks);
  EXPECT_TRUE(at::equal(whole, singles)) << MaxAbsDiff(whole, singles);

  // Per-block output frame counts: 1 + 4(T-1) for the first block, 4T afterwards.
  auto cache = Cache(*decoder_, latent.size(3), latent.size(4));
  EXPECT_EQ(decoder_->DecodeBlock(latent.narrow(2, 0, 5), cache.get()).size(2), 17);
  EXPECT_EQ(decoder_->DecodeBlock(latent.narrow(2, 5, 3), cache.get()).size(2), 12);
  EXPECT_EQ(cache->frames_decoded(), 8);
}

// Several latent frames per pass (bigger convolutions) agree with the per-frame reference
// loop up to convolution accumulation order. Tolerance 1e-5: the reference's own
// per-chunk post_quant_conv rounding moves outputs by 2.7e-6 (GOLDENS.md §3.4); values
// are O(1).
TEST_F(WanVaeTest, MultiFramePassesMatchPerFrameDecode) {
  const at::Tensor latent = Golden("e2e", "latent");
  const at::Tensor reference = DecodeInBlocks(*decoder_, latent, {11});
  VaeOptions options;
  options.max_frames_per_pass = 4;
  auto batched = WanVaeDecoder::FromTensors(dir_->vae, decoder_->named_parameters(), options);
  ASSERT_TRUE(batched.ok()) << batched.status();
  const at::Tensor whole = DecodeInBlocks(**batched, latent, {11});
  const at::Tensor blocks = DecodeInBlocks(**batched, latent, {5, 3, 3});
  ASSERT_EQ(whole.sizes(), reference.sizes());
  const double whole_diff = MaxAbsDiff(whole, reference);
  const double blocks_diff = MaxAbsDiff(blocks, reference);
  std::printf("max_frames_per_pass=4 vs per-frame: whole %.3e, blocks [5,3,3] %.3e (equal: %d)\n",
              whole_diff, blocks_diff, static_cast<int>(at::equal(whole, reference)));
  EXPECT_LE(whole_diff, 1e-5);
  EXPECT_LE(blocks_diff, 1e-5);
}

TEST_F(WanVaeTest, FrameCountIsOnePlusFourPerLaterLatentFrame) {
  at::manual_seed(1);
  for (int64_t t : {1, 2, 3}) {
    auto cache = Cache(*decoder_, 2, 3);
    const at::Tensor video = decoder_->DecodeBlock(at::randn({1, 16, t, 2, 3}), cache.get());
    EXPECT_EQ(video.sizes(), (at::IntArrayRef{1, 3, 1 + 4 * (t - 1), 16, 24}));
    EXPECT_EQ(video.scalar_type(), at::kFloat);
  }
}

TEST_F(WanVaeTest, CacheBytesPredictedEqualAllocated) {
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{4, 6}, {8, 12}, {3, 5}, {1, 1}}) {
    auto predicted = decoder_->CacheBytes(h, w);
    ASSERT_TRUE(predicted.ok()) << predicted.status();
    auto cache = Cache(*decoder_, h, w);
    EXPECT_EQ(cache->bytes(), *predicted) << h << "x" << w;
    int64_t slot_bytes = 0;
    for (size_t i = 0; i < cache->layout().slots.size(); ++i) {
      slot_bytes += cache->slot(i).numel() * cache->slot(i).element_size();
    }
    EXPECT_LE(slot_bytes, cache->bytes());
    EXPECT_GT(slot_bytes,
              cache->bytes() - 16 * 4 * static_cast<int64_t>(cache->layout().slots.size()));
  }
  EXPECT_EQ(decoder_->CacheBytes(0, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder_->NewCache(4, -1).status().code(), absl::StatusCode::kInvalidArgument);
}

// Memory does not grow with video length: 20 blocks use the bytes (and the very buffer)
// that 2 blocks used.
TEST_F(WanVaeTest, CacheBytesConstantOverTwentyBlocks) {
  at::manual_seed(2);
  auto cache = Cache(*decoder_, 2, 2);
  const int64_t initial = cache->bytes();
  const void* buffer = cache->buffer().data_ptr();
  int64_t frames = 0, bytes_after_2 = 0;
  for (int block = 0; block < 20; ++block) {
    const int64_t t = block == 0 ? 3 : 2;
    frames += decoder_->DecodeBlock(at::randn({1, 16, t, 2, 2}), cache.get()).size(2);
    if (block == 1) bytes_after_2 = cache->bytes();
  }
  EXPECT_EQ(bytes_after_2, initial);
  EXPECT_EQ(cache->bytes(), initial);
  EXPECT_EQ(cache->buffer().data_ptr(), buffer);
  EXPECT_EQ(cache->frames_decoded(), 41);
  EXPECT_EQ(frames, 1 + 4 * 40);
}

TEST_F(WanVaeTest, ResetRestartsTheStream) {
  const at::Tensor z = Golden("vae_decode", "in/z");
  auto cache = Cache(*decoder_, z.size(3), z.size(4));
  const at::Tensor first = decoder_->DecodeBlock(z, cache.get());
  cache->Reset();
  EXPECT_EQ(cache->frames_decoded(), 0);
  EXPECT_TRUE(at::equal(decoder_->DecodeBlock(z, cache.get()), first));
}

TEST_F(WanVaeTest, DistinctCachesDecodeConcurrently) {
  const at::Tensor z = Golden("vae_decode", "in/z");
  const at::Tensor z2 = z.flip({2}).contiguous();
  const at::Tensor ref1 = DecodeInBlocks(*decoder_, z, {4});
  const at::Tensor ref2 = DecodeInBlocks(*decoder_, z2, {4});
  at::Tensor out1, out2;
  std::thread a([&] { out1 = DecodeInBlocks(*decoder_, z, {2, 2}); });
  std::thread b([&] { out2 = DecodeInBlocks(*decoder_, z2, {1, 3}); });
  a.join();
  b.join();
  EXPECT_TRUE(at::equal(out1, ref1));
  EXPECT_TRUE(at::equal(out2, ref2));
}

TEST_F(WanVaeTest, RejectsMismatchedLatentWithoutTouchingTheCache) {
  auto cache = Cache(*decoder_, 4, 6);
  const at::Tensor before = cache->buffer().clone();
  EXPECT_THROW(decoder_->DecodeBlock(at::zeros({1, 16, 1, 4, 7}), cache.get()), c10::Error);
  EXPECT_THROW(decoder_->DecodeBlock(at::zeros({1, 8, 1, 4, 6}), cache.get()), c10::Error);
  EXPECT_THROW(decoder_->DecodeBlock(at::zeros({2, 16, 1, 4, 6}), cache.get()), c10::Error);
  EXPECT_THROW(decoder_->DecodeBlock(at::zeros({1, 16, 1, 4, 6}), nullptr), c10::Error);
  EXPECT_TRUE(at::equal(cache->buffer(), before));
  EXPECT_EQ(cache->frames_decoded(), 0);
}

// Binding decision 4: z / (1/std) + mean, not z * std + mean.
TEST_F(WanVaeTest, DenormalizeUsesReciprocalStd) {
  const at::Tensor z = Golden("vae_decode", "in/z");
  const at::Tensor z_vae = decoder_->DenormalizeLatent(z);
  EXPECT_TRUE(at::equal(z_vae, Golden("vae_decode", "dbg/z_vae")));
  const at::Tensor std_ = Golden("vae_decode", "in/latents_std").view({1, 16, 1, 1, 1});
  const at::Tensor mean = Golden("vae_decode", "in/latents_mean").view({1, 16, 1, 1, 1});
  EXPECT_FALSE(at::equal(z_vae, z * std_ + mean));  // the forms differ in the last bit
}

TEST_F(WanVaeTest, LoadIgnoresEncoderKeysAndKeepsDecoderKeys) {
  auto checkpoint = dir_->OpenWeights("vae");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  int encoder_keys = 0;
  for (const auto& [key, entry] : (*checkpoint)->entries()) encoder_keys += IsWanVaeEncoderKey(key);
  EXPECT_GT(encoder_keys, 0);  // the tiny file carries the encoder
  std::vector<std::string> expected, loaded;
  for (const auto& spec : WanVaeDecoderParamSpecs(dir_->vae)) expected.push_back(spec.name);
  for (const auto& [name, t] : decoder_->named_parameters()) loaded.push_back(name);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(loaded, expected);
  int64_t params = 0;
  for (const auto& [name, t] : decoder_->named_parameters()) params += t.numel();
  EXPECT_EQ(params, 524091);  // GOLDENS.md §1: decoder + post_quant_conv
}

TEST_F(WanVaeTest, FromTensorsListsEveryMismatch) {
  std::map<std::string, at::Tensor, std::less<>> tensors = decoder_->named_parameters();
  tensors.erase("decoder.conv_out.bias");
  tensors["decoder.conv_in.weight"] = at::zeros({1, 2, 3});
  tensors["decoder.extra.weight"] = at::zeros({1});
  tensors["encoder.conv_in.weight"] = at::zeros({1});  // ignored
  auto decoder = WanVaeDecoder::FromTensors(dir_->vae, tensors);
  ASSERT_EQ(decoder.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(decoder.status().message());
  EXPECT_THAT(msg, HasSubstr("missing: decoder.conv_out.bias"));
  EXPECT_THAT(msg, HasSubstr("mis-shaped: decoder.conv_in.weight"));
  EXPECT_THAT(msg, HasSubstr("unexpected: decoder.extra.weight"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("encoder.conv_in")));
}

TEST_F(WanVaeTest, RejectsBadOptions) {
  VaeOptions options;
  options.device = "tpu:x";
  EXPECT_EQ(WanVaeDecoder::Load(*dir_, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.max_frames_per_pass = 0;
  auto status = WanVaeDecoder::Load(*dir_, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("max_frames_per_pass"));
  options = {};
  options.dtype = at::kInt;
  EXPECT_THAT(std::string(WanVaeDecoder::Load(*dir_, options).status().message()),
              HasSubstr("dtype"));
  if (!at::hasCUDA()) {
    options = {};
    options.device = "cuda";
    EXPECT_EQ(WanVaeDecoder::Load(*dir_, options).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(VideoToUint8Frames, ClampsScalesTruncatesAndPutsFramesFirst) {
  // [1, 3, F=2, H=1, W=2]; channel c of frame f, column w holds values[c][f][w].
  const at::Tensor video = at::tensor({-2.0f, -1.0f, 0.0f, 1.0f,      // R
                                       0.999f, 0.5f, -0.999f, 2.0f,   // G
                                       0.01f, -0.01f, 0.25f, -0.5f})  // B
                               .view({1, 3, 2, 1, 2});
  const at::Tensor frames = VideoToUint8Frames(video);
  ASSERT_EQ(frames.sizes(), (at::IntArrayRef{2, 1, 2, 3}));
  EXPECT_EQ(frames.scalar_type(), at::kByte);
  EXPECT_TRUE(frames.is_contiguous());
  // 127.5 * x + 127.5, clamped to [0, 255], truncated.
  const std::vector<uint8_t> expected = {0,   254, 128, 0,   191, 126,  // frame 0: w=0, w=1
                                         127, 0,   159, 255, 255, 63};  // frame 1
  const at::Tensor flat = frames.reshape({-1});
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(flat[i].item<uint8_t>(), expected[i]) << i;
  }
  EXPECT_EQ(ClampVideo(video).max().item<float>(), 1.0f);
  EXPECT_EQ(ClampVideo(video).min().item<float>(), -1.0f);
}

}  // namespace
}  // namespace longsana::engine
