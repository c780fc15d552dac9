#include "engine/media/test_pattern.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>

namespace longsana::engine {
namespace {

uint8_t ToByte(double value) {
  // Round half up; the clamp keeps the result in [0, 255].
  return static_cast<uint8_t>(std::clamp(value, 0.0, 1.0) * 255.0 + 0.5);
}

}  // namespace

void RenderTestPattern(int width, int height, int64_t frame_index, uint8_t* rgb) {
  constexpr double kTwoPi = 2.0 * std::numbers::pi;
  const double t = static_cast<double>(frame_index);
  // Every term is separable in x and y, so the per-pixel work is a few multiply-adds.
  std::vector<double> red_x(width), blue_cos_x(width), blue_sin_x(width), blob_x(width);
  std::vector<double> green_y(height), blue_cos_y(height), blue_sin_y(height), blob_y(height);
  const double blob_cx = width * (0.5 + 0.3 * std::sin(0.05 * t));
  const double blob_cy = height * (0.5 + 0.3 * std::cos(0.037 * t));
  const double blob_sigma = 0.12 * std::min(width, height);
  const double blob_denominator = 2.0 * blob_sigma * blob_sigma;
  for (int x = 0; x < width; ++x) {
    const double u = (x + 0.5) / width;
    red_x[x] = 0.5 + 0.4 * std::sin(kTwoPi * (u + 0.015 * t));
    const double phase = kTwoPi * (0.6 * u + 0.02 * t);
    blue_cos_x[x] = std::cos(phase);
    blue_sin_x[x] = std::sin(phase);
    const double dx = x - blob_cx;
    blob_x[x] = std::exp(-dx * dx / blob_denominator);
  }
  for (int y = 0; y < height; ++y) {
    const double v = (y + 0.5) / height;
    green_y[y] = 0.5 + 0.4 * std::sin(kTwoPi * (0.8 * v - 0.011 * t) + 1.0);
    const double phase = kTwoPi * 0.6 * v;
    blue_cos_y[y] = std::cos(phase);
    blue_sin_y[y] = std::sin(phase);
    const double dy = y - blob_cy;
    blob_y[y] = std::exp(-dy * dy / blob_denominator);
  }
  for (int y = 0; y < height; ++y) {
    uint8_t* row = rgb + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) {
      // cos(a + b) = cos a cos b - sin a sin b.
      const double blue =
          0.5 + 0.35 * (blue_cos_x[x] * blue_cos_y[y] - blue_sin_x[x] * blue_sin_y[y]);
      const double blob = 0.3 * blob_x[x] * blob_y[y];
      row[3 * x + 0] = ToByte(red_x[x] + blob);
      row[3 * x + 1] = ToByte(green_y[y] + blob);
      row[3 * x + 2] = ToByte(blue - blob);
    }
  }
}

std::vector<uint8_t> RenderTestPatternBlock(int width, int height, int64_t first_frame,
                                            int num_frames) {
  const size_t frame_bytes = static_cast<size_t>(width) * height * 3;
  std::vector<uint8_t> block(frame_bytes * num_frames);
  for (int i = 0; i < num_frames; ++i) {
    RenderTestPattern(width, height, first_frame + i, block.data() + frame_bytes * i);
  }
  return block;
}

}  // namespace longsana::engine
