// A deterministic, smooth, moving RGB test pattern (drifting sinusoidal gradients plus a
// soft blob), used by the media tests, the media benchmark and smoke checks of the encoder.
// Smooth on purpose: it is what a video model produces, and unlike noise it lets a lossy
// codec reach a meaningful PSNR.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace longsana::engine {

// Writes frame `frame_index` of the pattern into `rgb`: [height, width, 3] uint8, rows
// top to bottom, RGB interleaved, width * height * 3 bytes. Requires width, height > 0.
void RenderTestPattern(int width, int height, int64_t frame_index, uint8_t* rgb);

// Frames first_frame .. first_frame + num_frames - 1 as one contiguous
// [num_frames, height, width, 3] uint8 buffer (the encoder's block layout).
std::vector<uint8_t> RenderTestPatternBlock(int width, int height, int64_t first_frame,
                                            int num_frames);

}  // namespace longsana::engine
