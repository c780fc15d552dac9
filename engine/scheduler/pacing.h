// Pacing: where the viewer of a session is, and whether the session may start its next
// block. Plain data (no LibTorch, no threads): the runner keeps one PlaybackClock per paced
// session under the registry lock.
//
// The clock is the viewer's playback position in seconds of video. It starts when the first
// chunk is handed over and then runs in real time, but never past the end of the video
// delivered so far (a player cannot play what it has not received: when generation falls
// behind, the clock waits, and resumes from there when the next chunk arrives). A client
// may report its player's actual position (and pause), which re-anchors the clock.
//
// The rule (serving.md §3): a paced session starts block b only while the video before b
// is at most `lookahead` seconds ahead of the viewer, i.e. start(b) - position <= lookahead.
// With a lookahead of one block the next block starts as soon as the viewer reaches the
// block before it, so the viewer never waits (if the block takes less than a block's
// duration to make), and a prompt switch lands at most lookahead + 1 block after what the
// viewer sees.
#pragma once

#include <chrono>

namespace longsana::engine {

class PlaybackClock {
 public:
  using Clock = std::chrono::steady_clock;

  // Seconds of video the viewer has played at `now`; 0 before the first chunk.
  double Position(Clock::time_point now) const;
  // A chunk whose video ends at `end_seconds` was handed to the client at `now`.
  void Delivered(Clock::time_point now, double end_seconds);
  // The client's player is at `seconds` (clamped to what was delivered), running or paused.
  void Report(Clock::time_point now, double seconds, bool paused);

  bool started() const { return started_; }
  bool paused() const { return paused_; }
  double delivered_seconds() const { return delivered_; }

 private:
  bool started_ = false;  // a chunk was delivered or the client reported a position
  bool paused_ = false;
  Clock::time_point anchor_{};
  double anchor_position_ = 0;  // the position at anchor_
  double delivered_ = 0;        // end of the video handed over so far
};

// The pacing rule above; a negative lookahead means "as fast as possible" (always true).
inline bool MayStartBlock(double block_start_seconds, double position, double lookahead) {
  return lookahead < 0 || block_start_seconds - position <= lookahead + 1e-9;
}

// Seconds of real time until a paced viewer at `position` reaches `block_start_seconds`
// (0 when it already has): when the block is due. A paused viewer never reaches it.
double SecondsUntilDue(const PlaybackClock& clock, double block_start_seconds,
                       PlaybackClock::Clock::time_point now);

}  // namespace longsana::engine
