// Prompt building for the text encoder (model.md §2.1-2.2), exactly as the reference
// inference script does it:
//   cleaned  = strip(user_prompt cut at "--aspect_ratio", then "--ar", then "--hw")
//              + " motion score: <N>."
//   full     = kChiPrompt + cleaned, tokenised as one string ([BOS] + pieces), truncated at
//              the end and right-padded to max_len_all = n_chi + L - 2
//   selected = positions [0] + [max_len_all-(L-1) .. max_len_all-1] (BOS + the last L-1)
// Torch-free; every function is thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace longsana::engine {

class Tokenizer;

// The "complex human instruction" of LongSANA (the image variant, SANA-cfg
// text_encoder.chi_prompt): 8 lines joined by "\n", the last being "User Prompt: " (trailing
// space, no newline). Verbatim; the tokenizer golden's sidecar stores the same text.
extern const std::string_view kChiPrompt;

// Python's str.strip(): removes leading and trailing characters for which str.isspace() is
// true (ASCII whitespace, \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000). `text` is treated as UTF-8; invalid bytes are kept.
std::string_view StripWhitespace(std::string_view text);

// The user prompt cut before the first "--aspect_ratio", then the first "--ar", then the
// first "--hw" (the reference's prepare_prompt_ar: any such substring cuts, flag or not),
// then StripWhitespace.
std::string StripPromptFlags(std::string_view user_prompt);

// StripPromptFlags(user_prompt) + " motion score: <motion_score>.". Requires
// motion_score >= 1 (the reference's other branch, " high motion"/" low motion" for scores
// <= 0, is not used by LongSANA); callers validate (TextEncoder returns InvalidArgument).
std::string CleanPrompt(std::string_view user_prompt, int motion_score = 10);

// The kept positions: {0, max_len_all-(L-1), ..., max_len_all-1}. Requires
// 1 <= caption_len <= max_len_all.
std::vector<int64_t> CaptionSelectIndex(int64_t max_len_all, int64_t caption_len);

struct PromptTokens {
  std::vector<int64_t> full_ids;      // [max_len_all]: [BOS] + pieces, truncated, pad-filled
  std::vector<int64_t> full_mask;     // [max_len_all]: 1 = token, 0 = padding
  std::vector<int64_t> select_index;  // [L]: CaptionSelectIndex(max_len_all, L)
  std::vector<int64_t> sel_ids;       // [L]: full_ids at select_index
  std::vector<int64_t> sel_mask;      // [L]: full_mask at select_index (the caption mask)
  int64_t n_chi = 0;                  // len([BOS] + pieces(kChiPrompt))
  int64_t max_len_all = 0;            // n_chi + L - 2
  int64_t num_tokens = 0;             // valid ids before truncation/padding, incl. BOS
  bool truncated = false;             // the full text had more than max_len_all ids
  int64_t caption_tokens() const;     // sum(sel_mask): BOS + the kept prompt tokens
};

// Tokenises kChiPrompt + `cleaned_prompt` (the output of CleanPrompt) as described above.
// InvalidArgument when caption_len < 1 or the text is not valid UTF-8.
absl::StatusOr<PromptTokens> BuildPromptTokens(const Tokenizer& tokenizer,
                                               std::string_view cleaned_prompt,
                                               int64_t caption_len);

}  // namespace longsana::engine
