#include "engine/common/request_checks.h"

#include "engine/common/str_util.h"
#include "engine/common/utf8.h"

namespace longsana::engine {

bool IsX264Preset(std::string_view name) {
  for (std::string_view p : kX264Presets) {
    if (p == name) return true;
  }
  return false;
}

absl::Status ValidatePrompt(std::string_view field, std::string_view prompt) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(StrCat(field, ": ", what));
  };
  if (prompt.size() > kMaxPromptBytes) {
    return bad(StrCat(prompt.size(), " bytes; at most ", kMaxPromptBytes, " bytes (16 KiB)"));
  }
  if (!IsValidUtf8(prompt)) return bad("is not valid UTF-8");
  bool blank = true;
  for (char c : prompt) blank = blank && (c == ' ' || c == '\t' || c == '\n' || c == '\r');
  if (blank) return bad("is empty; a non-empty text prompt is required");
  return absl::OkStatus();
}

std::vector<int64_t> BlockBoundaries(int64_t latent_frames, int64_t block_frames) {
  std::vector<int64_t> b = {0};
  if (latent_frames <= 0) return b;
  if (latent_frames < block_frames) {
    b.push_back(latent_frames);
    return b;
  }
  const int64_t remainder = latent_frames % block_frames;
  for (int64_t end = block_frames + remainder; end <= latent_frames; end += block_frames) {
    b.push_back(end);
  }
  return b;
}

int64_t NumBlocks(int64_t num_frames, int64_t block_frames) {
  const int64_t latent_frames = (num_frames - 1) / 4 + 1;
  return static_cast<int64_t>(BlockBoundaries(latent_frames, block_frames).size()) - 1;
}

}  // namespace longsana::engine
