// The checks of request values that more than one layer makes (the server's proto
// mapping, the engine's validation, the encoder's settings), written once. Torch-free.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace longsana::engine {

// Largest prompt accepted anywhere (request, timeline, switch), in bytes.
inline constexpr size_t kMaxPromptBytes = 16 * 1024;

// Every x264 preset, fastest first.
inline constexpr std::array<std::string_view, 10> kX264Presets = {
    "ultrafast", "superfast", "veryfast", "faster",   "fast",
    "medium",    "slow",      "slower",   "veryslow", "placebo"};
bool IsX264Preset(std::string_view name);

// A prompt: at most kMaxPromptBytes, well-formed UTF-8, not empty or only whitespace.
// InvalidArgument naming `field` (e.g. "switch_prompt.prompt") otherwise.
absl::Status ValidatePrompt(std::string_view field, std::string_view prompt);

// Block boundaries [0, b1, ..., T] for T latent frames: the first block takes
// block_frames + T mod block_frames frames (model.md §7.2); T < block_frames gives one block.
std::vector<int64_t> BlockBoundaries(int64_t latent_frames, int64_t block_frames);
// Blocks of a video of `num_frames` (1 + 4k) video frames.
int64_t NumBlocks(int64_t num_frames, int64_t block_frames);

}  // namespace longsana::engine
