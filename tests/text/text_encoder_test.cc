// The text encoder facade against the goldens (tokenizer parity runner, captions of the two
// golden prompts with and without the soft-cap), its prompt cache and its errors.
#include "engine/text/text_encoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/common/device_ops.h"
#include "engine/models/model_directory.h"
#include "engine/parity/golden.h"
#include "engine/parity/text_parity.h"
#include "engine/text/prompt.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::GoldenPath;
using ::longsana::testing::TempDir;
using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

constexpr std::string_view kFox = "A red fox runs at dawn --ar 16:9";
constexpr std::string_view kSuffix = " motion score: 10.";

class TextEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto golden = GoldenFile::Open(GoldenPath("gemma2"));
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = std::make_unique<GoldenFile>(std::move(*golden));
    auto mask = golden_->Get("chi/caption_mask");
    ASSERT_TRUE(mask.ok());
    caption_len_ = mask->size(1);
    auto dir = ModelDirectory::Open(TinyModelDir());
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = std::make_unique<ModelDirectory>(std::move(*dir));
  }

  std::unique_ptr<TextEncoder> Make(TextEncoderOptions options = {}) {
    options.caption_len = caption_len_;
    auto encoder = TextEncoder::Load(*dir_, options);
    EXPECT_TRUE(encoder.ok()) << encoder.status();
    return encoder.ok() ? std::move(*encoder) : nullptr;
  }

  // The second golden prompt as a user would type it (the sidecar stores it cleaned).
  static std::string Astronaut() {
    std::ifstream in(testing::TestdataPath("goldens/tokenizer.json"));
    std::string cleaned = nlohmann::json::parse(in)["notes"]["info"]["prompts"][1];
    return cleaned.substr(0, cleaned.size() - kSuffix.size());
  }

  std::unique_ptr<GoldenFile> golden_;
  std::unique_ptr<ModelDirectory> dir_;
  int64_t caption_len_ = 0;
};

TEST(TokenizerParity, MatchesGoldenExactly) {
  ParityOptions options;
  options.model_dir = TinyModelDir();
  options.golden_path = GoldenPath("tokenizer");
  auto report = RunTokenizerParity(options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::cout << FormatParityReport(*report);
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->rows.size(), 11u);
}

TEST_F(TextEncoderTest, CaptionsMatchGoldenWithAndWithoutSoftcap) {
  for (bool softcap : {false, true}) {
    TextEncoderOptions options;
    options.softcap = softcap;
    auto encoder = Make(options);
    ASSERT_NE(encoder, nullptr);
    auto expected = golden_->Get(softcap ? "chi/caption_eager" : "chi/caption_sdpa");
    auto expected_mask = golden_->Get("chi/caption_mask");
    ASSERT_TRUE(expected.ok() && expected_mask.ok());
    const std::string prompts[] = {std::string(kFox), Astronaut()};
    for (int i = 0; i < 2; ++i) {
      auto caption = encoder->Encode(prompts[i]);
      ASSERT_TRUE(caption.ok()) << caption.status();
      EXPECT_EQ(caption->embedding.sizes(),
                (at::IntArrayRef{caption_len_, encoder->hidden_size()}));
      EXPECT_EQ(caption->embedding.scalar_type(), at::kFloat);
      // [B, 1, L, C] -> row i: [L, C]
      Comparison c = CompareTensors("caption", caption->embedding, (*expected)[i][0],
                                    Tolerance::Close(2e-4, 1e-4));
      EXPECT_TRUE(c.pass) << "softcap=" << softcap << " prompt " << i << ": max_abs " << c.max_abs
                          << " " << c.detail;
      std::cout << "softcap=" << softcap << " prompt " << i << " caption max_abs=" << c.max_abs
                << "\n";
      EXPECT_TRUE(at::equal(caption->mask, (*expected_mask)[i]));
      EXPECT_EQ(caption->num_tokens, (*expected_mask)[i].sum().item<int64_t>());
      EXPECT_EQ(caption->truncated, i == 1);
    }
  }
}

TEST_F(TextEncoderTest, CacheHitReturnsIdenticalTensors) {
  auto encoder = Make();
  ASSERT_NE(encoder, nullptr);
  auto first = encoder->Encode(kFox);
  ASSERT_TRUE(first.ok());
  auto second = encoder->Encode(kFox);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->embedding.data_ptr(), second->embedding.data_ptr());
  EXPECT_TRUE(at::equal(first->embedding, second->embedding));
  EXPECT_TRUE(at::equal(first->mask, second->mask));
  // The same prompt spelled differently but cleaned identically hits too.
  auto third = encoder->Encode("  A red fox runs at dawn --hw 480:832 ");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->embedding.data_ptr(), first->embedding.data_ptr());
  const TextEncoderStats stats = encoder->stats();
  EXPECT_EQ(stats.encodes, 1u);
  EXPECT_EQ(stats.cache.hits, 2u);
  EXPECT_EQ(stats.cache.misses, 1u);
  EXPECT_EQ(stats.cache.entries, 1u);
  const size_t expected_bytes =
      caption_len_ * encoder->hidden_size() * 4 + caption_len_ * 8 + CleanPrompt(kFox).size();
  EXPECT_EQ(stats.cache.bytes, expected_bytes);
  // A fresh encode equals the cached tensors bit for bit.
  encoder->ClearCache();
  auto fresh = encoder->Encode(kFox);
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->embedding.data_ptr(), first->embedding.data_ptr());
  EXPECT_TRUE(at::equal(fresh->embedding, first->embedding));
}

TEST_F(TextEncoderTest, AnEncodeWaitsOnceAtTheEndAndGemmaNever) {
  auto encoder = Make();
  ASSERT_NE(encoder, nullptr);
  const device::TransferCounts before = device::ThreadCounts();
  ASSERT_TRUE(encoder->Encode(kFox).ok());
  const device::TransferCounts d = device::ThreadCounts() - before;
  // Gemma checks the ids on the host and uploads them with the mask; the caption's selection
  // index and mask are uploaded too; the one wait is the hand-over fence (text thread).
  EXPECT_EQ(d.uploads, 4);
  EXPECT_EQ(d.host_waits, 1);
  const device::TransferCounts hit = device::ThreadCounts();
  ASSERT_TRUE(encoder->Encode(kFox).ok());
  EXPECT_EQ((device::ThreadCounts() - hit).host_waits, 0);  // a cache hit touches no device
}

TEST_F(TextEncoderTest, MotionScoreIsPartOfTheKey) {
  auto encoder = Make();
  ASSERT_NE(encoder, nullptr);
  auto ten = encoder->Encode(kFox, 10);
  auto five = encoder->Encode(kFox, 5);
  ASSERT_TRUE(ten.ok() && five.ok());
  EXPECT_FALSE(at::equal(ten->embedding, five->embedding));
  EXPECT_EQ(encoder->stats().encodes, 2u);
}

TEST_F(TextEncoderTest, EvictsByEntries) {
  TextEncoderOptions options;
  options.cache_max_entries = 2;
  auto encoder = Make(options);
  ASSERT_NE(encoder, nullptr);
  for (std::string_view p : {"one", "two", "three"}) ASSERT_TRUE(encoder->Encode(p).ok());
  EXPECT_EQ(encoder->stats().cache.entries, 2u);
  EXPECT_EQ(encoder->stats().cache.evictions, 1u);
  ASSERT_TRUE(encoder->Encode("three").ok());  // hit
  ASSERT_TRUE(encoder->Encode("one").ok());    // evicted: encodes again
  EXPECT_EQ(encoder->stats().encodes, 4u);
  EXPECT_EQ(encoder->stats().cache.hits, 1u);
}

TEST_F(TextEncoderTest, EvictsByBytes) {
  const size_t caption_bytes = caption_len_ * dir_->text_encoder.hidden_size * 4 + caption_len_ * 8;
  TextEncoderOptions options;
  options.cache_max_bytes = 2 * caption_bytes + 64;  // two captions with short keys
  auto encoder = Make(options);
  ASSERT_NE(encoder, nullptr);
  for (std::string_view p : {"a", "b", "c"}) ASSERT_TRUE(encoder->Encode(p).ok());
  const TextEncoderStats stats = encoder->stats();
  EXPECT_EQ(stats.cache.entries, 2u);
  EXPECT_LE(stats.cache.bytes, options.cache_max_bytes);
  EXPECT_EQ(stats.cache.evictions, 1u);

  options.cache_max_bytes = caption_bytes / 2;  // nothing fits
  auto tiny = Make(options);
  ASSERT_NE(tiny, nullptr);
  ASSERT_TRUE(tiny->Encode("a").ok());
  ASSERT_TRUE(tiny->Encode("a").ok());
  EXPECT_EQ(tiny->stats().encodes, 2u);
  EXPECT_EQ(tiny->stats().cache.rejected, 2u);
}

TEST_F(TextEncoderTest, RejectsBadRequests) {
  TextEncoderOptions options;
  options.max_prompt_bytes = 64;
  auto encoder = Make(options);
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->Encode("x", 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto long_prompt = encoder->Encode(std::string(65, 'x'));
  EXPECT_EQ(long_prompt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(long_prompt.status().message()), HasSubstr("prompt"));
  EXPECT_EQ(encoder->Encode("bad \xFF").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->stats().encodes, 0u);
  EXPECT_EQ(encoder->stats().cache.entries, 0u);
}

TEST_F(TextEncoderTest, BadOptions) {
  TextEncoderOptions options;
  options.caption_len = 0;
  auto encoder = TextEncoder::Load(*dir_, options);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(encoder.status().message()), HasSubstr("caption_len"));
}

TEST_F(TextEncoderTest, TokenizerJsonOnlyFolderFailsNamingTokenizerModel) {
  TempDir tmp;
  namespace fs = std::filesystem;
  fs::copy(TinyModelDir(), tmp.path(), fs::copy_options::recursive);
  fs::remove(fs::path(tmp.path()) / "tokenizer" / "tokenizer.model");
  testing::WriteFile(tmp.File("tokenizer/tokenizer.json"), R"({"version": "1.0"})");
  auto dir = ModelDirectory::Open(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto encoder = TextEncoder::Load(*dir, {});
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(encoder.status().message()), HasSubstr("tokenizer.model"));
}

TEST_F(TextEncoderTest, ConcurrentEncodesAgree) {
  TextEncoderOptions options;
  options.cache_max_entries = 1;  // constant churn: hits, misses and evictions interleave
  auto encoder = Make(options);
  ASSERT_NE(encoder, nullptr);
  auto ref_a = encoder->Encode("alpha");
  auto ref_b = encoder->Encode("beta");
  ASSERT_TRUE(ref_a.ok() && ref_b.ok());
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 6; ++i) {
        const bool a = (i + t) % 2 == 0;
        auto c = encoder->Encode(a ? "alpha" : "beta");
        // allclose, not equal: BLAS may partition work differently under concurrent calls.
        if (!c.ok() || !at::allclose(c->embedding, (a ? ref_a : ref_b)->embedding, 1e-5, 1e-6)) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  const TextEncoderStats stats = encoder->stats();
  EXPECT_EQ(stats.cache.hits + stats.cache.misses, 26u);
}

}  // namespace
}  // namespace longsana::engine
