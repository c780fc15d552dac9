// Prompt cleaning, the CHI text and the caption selection (torch-free).
#include "engine/text/prompt.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::TestdataPath;
using ::testing::ElementsAre;

nlohmann::json TokenizerSidecar() {
  std::ifstream in(TestdataPath("goldens/tokenizer.json"));
  return nlohmann::json::parse(in);
}

TEST(CleanPrompt, StripsAspectRatioFlagAndAppendsMotionScore) {
  // GOLDENS.md §2.1 prompt 0: the raw prompt and the cleaned text the reference encoded.
  const auto sidecar = TokenizerSidecar();
  EXPECT_EQ(CleanPrompt("A red fox runs at dawn --ar 16:9"),
            sidecar["notes"]["info"]["prompts"][0].get<std::string>());
  EXPECT_EQ(CleanPrompt("A red fox runs at dawn --ar 16:9"),
            "A red fox runs at dawn motion score: 10.");
}

TEST(CleanPrompt, Cases) {
  struct Case {
    std::string_view in;
    std::string_view out;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"plain", "plain"},
           {"  padded\t\n", "padded"},
           {"a cat --aspect_ratio 9:16", "a cat"},
           {"a cat --hw 480:832", "a cat"},
           {"a cat --ar 1:1 --hw 480:832", "a cat"},
           {"a cat --hw 480:832 --ar 1:1", "a cat"},
           // Any occurrence cuts, even without a value (the reference splits on the text).
           {"a --arbitrary cat", "a"},
           {"--ar 16:9", ""},
           {"", ""},
           {"   ", ""},
           // Python's str.strip() also removes Unicode spaces (NBSP, ideographic space).
           {"\xC2\xA0"
            "cat\xE3\x80\x80",
            "cat"},
           // ... but not other non-ASCII characters.
           {"\xC3\xA9t\xC3\xA9", "\xC3\xA9t\xC3\xA9"},
           {"dash - separated -- words", "dash - separated -- words"},
       }) {
    EXPECT_EQ(StripPromptFlags(c.in), c.out) << "input: '" << c.in << "'";
  }
}

TEST(CleanPrompt, MotionScoreFormat) {
  EXPECT_EQ(CleanPrompt("x", 10), "x motion score: 10.");
  EXPECT_EQ(CleanPrompt("x", 3), "x motion score: 3.");
  EXPECT_EQ(CleanPrompt("", 10), " motion score: 10.");
}

TEST(StripWhitespace, KeepsInvalidUtf8AndInnerSpaces) {
  EXPECT_EQ(StripWhitespace(" a  b "), "a  b");
  EXPECT_EQ(StripWhitespace("\xFF "), "\xFF");
  EXPECT_EQ(StripWhitespace(" \x80"), "\x80");
  EXPECT_EQ(StripWhitespace("\x1c\x1f\x0b\x0c"), "");
}

TEST(ChiPrompt, EqualsTheGoldenText) {
  const auto sidecar = TokenizerSidecar();
  EXPECT_EQ(std::string(kChiPrompt), sidecar["notes"]["chi_prompt"].get<std::string>());
  // 8 lines joined by "\n", the last one "User Prompt: " without a newline.
  EXPECT_EQ(std::count(kChiPrompt.begin(), kChiPrompt.end(), '\n'), 7);
  EXPECT_TRUE(kChiPrompt.ends_with("\nUser Prompt: "));
}

TEST(CaptionSelectIndex, BosPlusLastPositions) {
  EXPECT_THAT(CaptionSelectIndex(10, 4), ElementsAre(0, 7, 8, 9));
  EXPECT_THAT(CaptionSelectIndex(5, 1), ElementsAre(0));
  EXPECT_THAT(CaptionSelectIndex(3, 3), ElementsAre(0, 1, 2));
}

}  // namespace
}  // namespace longsana::engine
