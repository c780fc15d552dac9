// TextWorker: encodes prompts (Gemma-2) off the API threads, one thread, fair and bounded.
//
// The queue holds sessions, each at most once, not prompts: a session's initial captions
// (its prompt and timeline), then only its latest prompt switch (a newer switch replaces
// one not yet taken, so a burst of switches costs one encode). Sessions are served in
// arrival order, so one client's switches cannot starve the others' encodes. Private to
// engine/runner; the queue is guarded by the registry lock.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "engine/runner/session_registry.h"
#include "engine/text/text_encoder.h"

namespace longsana::engine {

class TextWorker {
 public:
  TextWorker(SessionRegistry& registry, TextEncoder& text, int queue_size)
      : registry_(registry), text_(text), queue_size_(queue_size) {}
  ~TextWorker() { Stop(); }

  void Start();
  // Finishes the encode in progress, then returns; queued work is dropped.
  void Stop();

  // Queues `s` for its pending text work (initial captions or Session::text_switch).
  // ResourceExhausted when `queue_size` other sessions are already waiting.
  absl::Status RequestLocked(SessionRegistry::Lock& lock, const std::shared_ptr<Session>& s);
  // OK when RequestLocked would take a session not yet queued.
  absl::Status CheckRoomLocked() const;

 private:
  void Loop();

  SessionRegistry& registry_;
  TextEncoder& text_;  // used by this worker only
  const int queue_size_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Session>> queue_;  // registry lock
  bool stop_ = false;                           // registry lock
  std::thread thread_;
};

}  // namespace longsana::engine
