// Progress display of the `longsana` CLI: a redrawn one-line bar per block (fps, ETA) on a
// terminal, plain lines otherwise. No gRPC here; fed plain numbers by the commands.
//
// Not thread-safe: one caller (the thread reading the stream).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace longsana::client {

class ProgressDisplay {
 public:
  // `out`: where progress goes (stdout, or stderr when the video goes to stdout);
  // `interactive`: redraw one line (a terminal) instead of printing lines.
  ProgressDisplay(std::FILE* out, bool interactive);

  // The replica serving the stream ("ipv4:10.0.0.7:50051"), printed with Accepted: with
  // several servers it tells which one took the session. Empty: not printed.
  void SetPeer(std::string peer) { peer_ = std::move(peer); }
  void Accepted(const std::string& session_id, int width, int height, int num_frames,
                int num_blocks, uint64_t seed, int queue_position);
  void Queued(int position);
  void Step(int block, int step, int num_steps);
  // A chunk arrived; `frames` of video in it (0 for the init segment).
  void Chunk(int64_t sequence, int block, int first_frame, int frames, size_t bytes);
  // The video grew or shrank (extend / stop).
  void SetTotals(int num_frames, int num_blocks);
  // Ends the redrawn line before other output.
  void Break();

  // Seconds since Accepted until the first video fragment; < 0 if none yet.
  double time_to_first_chunk() const { return first_chunk_seconds_; }
  double elapsed() const;
  int64_t frames_received() const { return frames_received_; }

 private:
  void Redraw();

  std::FILE* out_;
  const bool interactive_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int num_frames_ = 0;
  int num_blocks_ = 0;
  int block_ = 0;
  int step_ = 0;
  int num_steps_ = 0;
  int64_t frames_received_ = 0;
  int blocks_received_ = 0;
  double first_chunk_seconds_ = -1;
  bool line_open_ = false;
  std::string peer_;
};

// "1.5 KiB", "3.2 MiB".
std::string HumanBytes(uint64_t bytes);
// "2.06 B", "540 M", "12.3 k".
std::string HumanCount(uint64_t n);

}  // namespace longsana::client
