// SessionEvents: the ordered, non-nesting delivery of one session's events to its ChunkSink.
//
// Producers (the API threads, the runner, the media and text workers) push typed events in
// the order that defines them, usually under the registry lock, and call Flush() once they
// hold no lock. Flush delivers every queued event in order, unless another thread is already
// delivering this session's events (that thread then delivers them too) or this thread is
// inside one of this session's sink callbacks (a sink that calls back into the engine): the
// new events are delivered after the callback returns. So sink calls for one session never
// overlap, never nest, never run under an engine lock, and the first terminal event
// (Complete or Fail) is the last one delivered.
//
// Thread-safe. Memory: events wait only between a push and the next Flush (sinks must not
// block), so the queue holds at most the events of one engine step.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <variant>

#include "engine/api/engine.h"

namespace longsana::engine {

class SessionEvents {
 public:
  explicit SessionEvents(std::shared_ptr<ChunkSink> sink) : sink_(std::move(sink)) {}

  void Queued(int position, double estimated_start_seconds);
  void Started();
  void Progress(int64_t block, int step, int num_steps);
  void Chunk(VideoChunk chunk);
  void Ack(CommandAck ack);
  // Terminal events: the first one wins; every later push is dropped.
  void Complete(CompletionStats stats);
  void Fail(absl::Status status);

  void Flush();

  bool terminal() const;
  bool Congested() const { return sink_->Congested(); }

 private:
  struct QueuedEvent {
    int position;
    double eta;
  };
  struct StartedEvent {};
  struct ProgressEvent {
    int64_t block;
    int step, num_steps;
  };
  using Event = std::variant<QueuedEvent, StartedEvent, ProgressEvent, VideoChunk, CommandAck,
                             CompletionStats, absl::Status>;

  void Push(Event event, bool terminal);
  void Deliver(Event& event);

  const std::shared_ptr<ChunkSink> sink_;
  mutable std::mutex mu_;
  std::deque<Event> events_;
  bool delivering_ = false;
  bool terminal_ = false;
};

}  // namespace longsana::engine
