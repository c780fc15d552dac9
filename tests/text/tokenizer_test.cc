// The SentencePiece tokenizer and prompt tokens on the tiny tokenizer (torch-free; the
// exact golden comparison runs through the parity runner in text_encoder_test).
#include "engine/text/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "engine/text/prompt.h"
#include "engine/common/utf8.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TempDir;
using ::longsana::testing::TestdataPath;
using ::longsana::testing::TinyModelDir;
using ::testing::HasSubstr;

std::unique_ptr<Tokenizer> TinyTokenizer() {
  auto config = TokenizerConfig::FromDirectory(TinyModelDir() + "/tokenizer");
  EXPECT_TRUE(config.ok()) << config.status();
  auto tokenizer = Tokenizer::Load(TinyModelDir() + "/tokenizer", *config);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

nlohmann::json Info() {
  std::ifstream in(TestdataPath("goldens/tokenizer.json"));
  return nlohmann::json::parse(in)["notes"]["info"];
}

// Caption tokens the reference kept for prompt `i` (BOS + prompt pieces, no pads).
int64_t KeptTokens(const nlohmann::json& info, int i) {
  const auto pieces = info["sel_pieces"][i].get<std::vector<std::string>>();
  return std::count_if(pieces.begin(), pieces.end(),
                       [](const std::string& p) { return p != "<pad>"; });
}

TEST(Tokenizer, SpecialIds) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), Info()["vocab_size"].get<int64_t>());
  EXPECT_EQ(t->pad_id(), 0);
  EXPECT_EQ(t->eos_id(), 1);
  EXPECT_EQ(t->bos_id(), 2);
  EXPECT_EQ(t->unk_id(), 3);
}

TEST(Tokenizer, PiecesMatchTheReference) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  const auto info = Info();
  for (size_t i = 0; i < info["prompts"].size(); ++i) {
    auto ids = t->Encode(info["prompts"][i].get<std::string>());
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(t->IdsToPieces(*ids), info["plain_pieces"][i].get<std::vector<std::string>>());
    // BOS first, never EOS.
    EXPECT_EQ(ids->front(), t->bos_id());
    EXPECT_NE(ids->back(), t->eos_id());
  }
}

TEST(Tokenizer, SpecialTokenTextIsLiteral) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  auto ids = t->Encode("<eos>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(std::count(ids->begin(), ids->end(), t->eos_id()), 0);
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  for (std::string_view bad : {std::string_view("a\xFF"), std::string_view("\xC0\xAF"),
                               std::string_view("\xED\xA0\x80"), std::string_view("\xE2\x82")}) {
    auto ids = t->Encode(bad);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(t->Encode("caf\xC3\xA9 \xF0\x9F\x98\x80").ok());
  EXPECT_TRUE(IsValidUtf8(""));
}

TEST(Tokenizer, TokenizerJsonOnlyNamesTheMissingFile) {
  TempDir dir;
  testing::WriteFile(dir.File("tokenizer.json"), R"({"version": "1.0"})");
  auto t = Tokenizer::Load(dir.path(), TokenizerConfig{});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("tokenizer.model"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("tokenizer.json"));
}

TEST(Tokenizer, MissingAndCorruptModel) {
  TempDir dir;
  auto missing = Tokenizer::Load(dir.path(), TokenizerConfig{});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("tokenizer.model"));

  testing::WriteFile(dir.File("tokenizer.model"), "definitely not a protobuf");
  auto corrupt = Tokenizer::Load(dir.path(), TokenizerConfig{});
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(corrupt.status().message()), HasSubstr("tokenizer.model"));
}

TEST(Tokenizer, UnknownSpecialTokenIsAnError) {
  TokenizerConfig config;
  config.pad_token = "<no-such-piece>";
  auto t = Tokenizer::Load(TinyModelDir() + "/tokenizer", config);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("pad_token"));
}

TEST(PromptTokens, ShortPromptIsPaddedAndSelectionKeepsIt) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  const auto info = Info();
  const int64_t L = info["L"].get<int64_t>();
  auto p = BuildPromptTokens(*t, info["prompts"][0].get<std::string>(), L);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->n_chi, info["n_chi"].get<int64_t>());
  EXPECT_EQ(p->max_len_all, info["max_len_all"].get<int64_t>());
  EXPECT_EQ(p->max_len_all, p->n_chi + L - 2);
  EXPECT_FALSE(p->truncated);
  ASSERT_EQ(p->full_ids.size(), static_cast<size_t>(p->max_len_all));
  ASSERT_EQ(p->sel_ids.size(), static_cast<size_t>(L));
  // BOS + exactly the prompt's pieces (the CHI's final "▁" merged into "▁A"), then pads.
  EXPECT_EQ(t->IdsToPieces(p->sel_ids), info["sel_pieces"][0].get<std::vector<std::string>>());
  EXPECT_EQ(p->caption_tokens(), KeptTokens(info, 0));
  EXPECT_LT(p->caption_tokens(), L);
  EXPECT_EQ(p->full_ids.back(), t->pad_id());
  EXPECT_EQ(p->full_mask.back(), 0);
}

TEST(PromptTokens, LongPromptIsTruncatedAtTheEnd) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  const auto info = Info();
  const int64_t L = info["L"].get<int64_t>();
  auto p = BuildPromptTokens(*t, info["prompts"][1].get<std::string>(), L);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->truncated);
  EXPECT_EQ(p->caption_tokens(), L);
  EXPECT_EQ(t->IdsToPieces(p->sel_ids), info["sel_pieces"][1].get<std::vector<std::string>>());
  // The full sequence keeps [BOS] + the first max_len_all - 1 ids of the whole text.
  auto whole = t->Encode(std::string(kChiPrompt) + info["prompts"][1].get<std::string>());
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(std::equal(p->full_ids.begin(), p->full_ids.end(), whole->begin()));
}

TEST(PromptTokens, CaptionLenIsConfigurable) {
  auto t = TinyTokenizer();
  ASSERT_NE(t, nullptr);
  const auto info = Info();
  auto p = BuildPromptTokens(*t, info["prompts"][0].get<std::string>(), 300);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->sel_ids.size(), 300u);
  EXPECT_EQ(p->max_len_all, p->n_chi + 298);
  EXPECT_EQ(p->caption_tokens(), KeptTokens(info, 0));
  EXPECT_EQ(BuildPromptTokens(*t, "x", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace longsana::engine
