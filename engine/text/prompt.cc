#include "engine/text/prompt.h"

#include <numeric>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/text/tokenizer.h"
#include "engine/common/utf8.h"

namespace longsana::engine {

const std::string_view kChiPrompt =
    "Given a user prompt, generate an \"Enhanced prompt\" that provides detailed visual "
    "descriptions suitable for image generation. Evaluate the level of detail in the user "
    "prompt:\n"
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, "
    "textures, and spatial relationships to create vivid and concrete scenes.\n"
    "- If the prompt is already detailed, refine and enhance the existing details slightly "
    "without overcomplicating.\n"
    "Here are examples of how to transform or refine prompts:\n"
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round "
    "shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red "
    "flowers.\n"
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, "
    "featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a "
    "double-decker bus passing by towering glass skyscrapers.\n"
    "Please generate only the enhanced description for the prompt below and avoid including "
    "any additional commentary or evaluations:\n"
    "User Prompt: ";

namespace {

bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace

std::string_view StripWhitespace(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    uint32_t cp = 0;
    const int len = DecodeUtf8At(text, begin, &cp);
    if (len == 0 || !IsPythonSpace(cp)) break;
    begin += len;
  }
  size_t end = text.size();
  while (end > begin) {
    // Step back to the start of the last code point (at most 4 bytes).
    size_t start = end - 1;
    while (start > begin && end - start < 4 &&
           (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    uint32_t cp = 0;
    const int len = DecodeUtf8At(text, start, &cp);
    if (len == 0 || start + len != end || !IsPythonSpace(cp)) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string StripPromptFlags(std::string_view user_prompt) {
  std::string_view p = user_prompt;
  for (std::string_view flag : {"--aspect_ratio", "--ar", "--hw"}) {
    p = p.substr(0, std::min(p.size(), p.find(flag)));
  }
  return std::string(StripWhitespace(p));
}

std::string CleanPrompt(std::string_view user_prompt, int motion_score) {
  return StrCat(StripPromptFlags(user_prompt), " motion score: ", motion_score, ".");
}

std::vector<int64_t> CaptionSelectIndex(int64_t max_len_all, int64_t caption_len) {
  std::vector<int64_t> index;
  index.reserve(caption_len);
  index.push_back(0);
  for (int64_t k = caption_len - 1; k >= 1; --k) index.push_back(max_len_all - k);
  return index;
}

int64_t PromptTokens::caption_tokens() const {
  return std::accumulate(sel_mask.begin(), sel_mask.end(), int64_t{0});
}

absl::StatusOr<PromptTokens> BuildPromptTokens(const Tokenizer& tokenizer,
                                               std::string_view cleaned_prompt,
                                               int64_t caption_len) {
  if (caption_len < 1) {
    return absl::InvalidArgumentError(StrCat("caption_len: must be at least 1, got ", caption_len));
  }
  PromptTokens t;
  LONGSANA_ASSIGN_OR_RETURN(std::vector<int64_t> chi_ids, tokenizer.Encode(kChiPrompt));
  t.n_chi = static_cast<int64_t>(chi_ids.size());
  // The reference's "magic number 2": the BOS and the standalone "▁" that ends the CHI and
  // merges into the first prompt word.
  t.max_len_all = t.n_chi + caption_len - 2;
  if (t.max_len_all < caption_len) {
    return absl::InvalidArgumentError(
        StrCat("tokenizer: the CHI prompt encodes to ", t.n_chi, " ids; at least 2 are needed"));
  }
  std::string text;
  text.reserve(kChiPrompt.size() + cleaned_prompt.size());
  StrAppend(&text, kChiPrompt, cleaned_prompt);
  LONGSANA_ASSIGN_OR_RETURN(t.full_ids, tokenizer.Encode(text));
  t.num_tokens = static_cast<int64_t>(t.full_ids.size());
  // transformers' truncation=True (longest_first, right side) keeps [BOS] + the first
  // max_len_all - 1 pieces: the same as cutting [BOS] + pieces at max_len_all.
  t.truncated = t.num_tokens > t.max_len_all;
  const int64_t kept = std::min(t.num_tokens, t.max_len_all);
  t.full_ids.resize(t.max_len_all, tokenizer.pad_id());
  t.full_mask.assign(t.max_len_all, 0);
  std::fill(t.full_mask.begin(), t.full_mask.begin() + kept, 1);
  t.select_index = CaptionSelectIndex(t.max_len_all, caption_len);
  t.sel_ids.reserve(caption_len);
  t.sel_mask.reserve(caption_len);
  for (int64_t i : t.select_index) {
    t.sel_ids.push_back(t.full_ids[i]);
    t.sel_mask.push_back(t.full_mask[i]);
  }
  return t;
}

}  // namespace longsana::engine
