#include "client/progress.h"

#include <fmt/format.h>

#include <algorithm>

namespace longsana::client {

ProgressDisplay::ProgressDisplay(std::FILE* out, bool interactive)
    : out_(out), interactive_(interactive) {}

double ProgressDisplay::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressDisplay::Accepted(const std::string& session_id, int width, int height, int num_frames,
                               int num_blocks, uint64_t seed, int queue_position) {
  num_frames_ = num_frames;
  num_blocks_ = num_blocks;
  fmt::print(out_, "session {}{}: {}x{}, {} frames in {} blocks, seed {}{}\n", session_id,
             peer_.empty() ? "" : " on " + peer_, width, height, num_frames, num_blocks, seed,
             queue_position > 0 ? fmt::format(", queued at position {}", queue_position) : "");
  std::fflush(out_);
}

void ProgressDisplay::Queued(int position) {
  if (interactive_) {
    fmt::print(out_, "\r\033[Kqueued: position {}", position);
    line_open_ = true;
  } else {
    fmt::print(out_, "queued: position {}\n", position);
  }
  std::fflush(out_);
}

void ProgressDisplay::Step(int block, int step, int num_steps) {
  block_ = block;
  step_ = step;
  num_steps_ = num_steps;
  if (interactive_) Redraw();  // plain output prints per chunk only
}

void ProgressDisplay::Chunk(int64_t sequence, int block, int first_frame, int frames,
                            size_t bytes) {
  if (frames > 0) {
    if (first_chunk_seconds_ < 0) first_chunk_seconds_ = elapsed();
    frames_received_ += frames;
    blocks_received_ = std::max(blocks_received_, block + 1);  // one or many fragments per block
    block_ = block + 1;
    step_ = 0;
  }
  if (interactive_) {
    Redraw();
    return;
  }
  const double t = elapsed();
  if (frames == 0) {
    fmt::print(out_, "chunk {}: init segment, {} bytes, t={:.2f} s\n", sequence, bytes, t);
  } else {
    const double fps = t > 0 ? static_cast<double>(frames_received_) / t : 0;
    fmt::print(out_, "chunk {}: block {}/{}, frames {}-{}, {} bytes, t={:.2f} s, {:.1f} fps\n",
               sequence, block + 1, num_blocks_, first_frame, first_frame + frames - 1, bytes, t,
               fps);
  }
  std::fflush(out_);
}

void ProgressDisplay::SetTotals(int num_frames, int num_blocks) {
  num_frames_ = num_frames;
  num_blocks_ = num_blocks;
}

void ProgressDisplay::Break() {
  if (line_open_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    line_open_ = false;
  }
}

void ProgressDisplay::Redraw() {
  constexpr int kWidth = 30;
  const double t = elapsed();
  const int total_blocks = std::max(1, num_blocks_);
  const double steps = num_steps_ > 0 ? static_cast<double>(step_) / (num_steps_ + 1) : 0;
  const double done = std::min(1.0, (blocks_received_ + steps) / total_blocks);
  const int filled = static_cast<int>(done * kWidth);
  const double fps = t > 0 ? static_cast<double>(frames_received_) / t : 0;
  std::string eta = "--";
  if (done > 0 && done < 1) eta = fmt::format("{:.1f} s", t * (1 - done) / done);
  if (done >= 1) eta = "0 s";
  fmt::print(out_, "\r\033[Kblock {}/{} [{}{}] {:3.0f}%  {:.1f} fps  ETA {}",
             std::min(block_ + 1, total_blocks), total_blocks, std::string(filled, '#'),
             std::string(kWidth - filled, '-'), done * 100, fps, eta);
  std::fflush(out_);
  line_open_ = true;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string HumanCount(uint64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.1f} M", n / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f} k", n / 1e3);
  return fmt::format("{}", n);
}

}  // namespace longsana::client
