#include "engine/runner/session_events.h"

#include <utility>

namespace longsana::engine {

void SessionEvents::Queued(int position, double eta) { Push(QueuedEvent{position, eta}, false); }
void SessionEvents::Started() { Push(StartedEvent{}, false); }
void SessionEvents::Progress(int64_t block, int step, int num_steps) {
  Push(ProgressEvent{block, step, num_steps}, false);
}
void SessionEvents::Chunk(VideoChunk chunk) { Push(std::move(chunk), false); }
void SessionEvents::Ack(CommandAck ack) { Push(std::move(ack), false); }
void SessionEvents::Complete(CompletionStats stats) { Push(std::move(stats), true); }
void SessionEvents::Fail(absl::Status status) { Push(std::move(status), true); }

bool SessionEvents::terminal() const {
  std::lock_guard lock(mu_);
  return terminal_;
}

void SessionEvents::Push(Event event, bool terminal) {
  std::lock_guard lock(mu_);
  if (terminal_) return;
  terminal_ = terminal;
  events_.push_back(std::move(event));
}

void SessionEvents::Flush() {
  std::unique_lock lock(mu_);
  if (delivering_) return;  // that thread (maybe this one, further up) delivers ours too
  delivering_ = true;
  while (!events_.empty()) {
    Event event = std::move(events_.front());
    events_.pop_front();
    lock.unlock();
    Deliver(event);
    lock.lock();
  }
  delivering_ = false;
}

void SessionEvents::Deliver(Event& event) {
  ChunkSink& sink = *sink_;
  std::visit(
      [&sink](auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, QueuedEvent>) {
          sink.OnQueued(e.position, e.eta);
        } else if constexpr (std::is_same_v<T, StartedEvent>) {
          sink.OnStarted();
        } else if constexpr (std::is_same_v<T, ProgressEvent>) {
          sink.OnProgress(e.block, e.step, e.num_steps);
        } else if constexpr (std::is_same_v<T, VideoChunk>) {
          sink.OnChunk(std::move(e));
        } else if constexpr (std::is_same_v<T, CommandAck>) {
          sink.OnCommandAck(e);
        } else if constexpr (std::is_same_v<T, CompletionStats>) {
          sink.OnCompleted(e);
        } else {
          sink.OnFailed(e);
        }
      },
      event);
}

}  // namespace longsana::engine
