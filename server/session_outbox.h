// SessionOutbox: the ChunkSink of one streamed session and the bounded queue of events
// waiting to be written to its gRPC stream.
//
// Flow: the engine calls the ChunkSink methods (engine threads); each becomes a
// v1::GenerateEvent appended to the outbox. The outbox keeps exactly one write in flight on
// the stream (EventWriter::StartEventWrite) and starts the next one from OnWriteDone. When
// the session has ended (Completed queued, OnFailed, Abort) and every queued event is
// written, it finishes the stream once (EventWriter::FinishStream).
//
// Bounds: video chunks are never dropped; instead Congested() is true while the outbox holds
// (queued + in flight) >= `max_chunks` chunks, and the engine then schedules no new work for
// this session, so a slow reader pauses only its own session. Progress and Queued events
// coalesce (a newer one replaces an unwritten older one). Command acks are bounded by the
// Session reactor, which stops reading commands while PendingEvents() >= its limit.
//
// Ordering: Accepted is always the first event written: events that arrive before Open()
// (the engine may call the sink before Submit returns) wait behind it.
//
// Watch: with OutboxOptions::broadcasts set, the outbox also publishes the session to its
// SessionBroadcast (server/session_broadcast.h): watchable from Open, every chunk as the
// engine hands it over, and the end (Completed, or the session's status; also when the
// owner's stream ends first: the session then ends too). Viewers never hold the owner back.
//
// Logging: INFO when the stream opens (session id, RPC, peer) and closes (final status,
// chunks and bytes delivered); the generation lifecycle itself is the engine's to log.
// Metrics (optional): queue wait, time to first chunk, inter-chunk gap, block stages and
// real-time factor as the engine reports them; bytes sent as writes complete; the outcome
// (final code) when the stream finishes.
//
// Lifetime and threads: shared by the engine (through the shared_ptr<ChunkSink> it was
// given) and the reactor. Every method is thread-safe. Writer calls are made without holding
// the outbox lock, at most one at a time; after Detach() (the reactor's OnDone) the writer is
// never called again and engine events are dropped.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.pb.h"
#include "server/auth/tenants.h"
#include "server/server_metrics.h"

namespace longsana::server {

class BroadcastRegistry;
class SessionBroadcast;

// The stream side of an outbox; implemented by the gRPC reactors (and by tests).
class EventWriter {
 public:
  virtual ~EventWriter() = default;
  // Starts writing `event`, which stays valid until the matching SessionOutbox::OnWriteDone.
  virtual void StartEventWrite(const v1::GenerateEvent* event) = 0;
  // Ends the stream with `status`; called once, with no write in flight.
  virtual void FinishStream(const absl::Status& status) = 0;
};

struct OutboxOptions {
  int max_chunks = 4;  // Congested() at this many undelivered chunks
  std::string label;   // for the log, e.g. "Generate from ipv4:127.0.0.1:4242"
  std::string tenant;  // for logs and metric labels ("" in tests)
  std::string request_id;            // echoed in Accepted, carried in every log line
  ServerMetrics* metrics = nullptr;  // optional; must outlive the outbox
  // The session's place in its tenant's quota: MarkStarted when the engine starts it,
  // Release when its stream finishes. Optional.
  std::shared_ptr<TenantLease> tenant_lease;
  // Where the session's Watch viewers find it; null: not watchable.
  std::shared_ptr<BroadcastRegistry> broadcasts;
};

class SessionOutbox final : public engine::ChunkSink {
 public:
  SessionOutbox(OutboxOptions options, EventWriter* writer);
  ~SessionOutbox() override;

  // --- the reactor side ---
  // Queues Accepted (from the Submit result) in front of everything else and starts writing.
  void Open(const engine::SessionInfo& info);
  // The write started by StartEventWrite finished. ok = false: the stream is broken (client
  // gone); pending events are dropped and the stream is finished as cancelled.
  void OnWriteDone(bool ok);
  // Ends the stream early with `status` (client cancelled, protocol error): drops the
  // pending events and finishes as soon as no write is in flight. No-op once ended.
  void Abort(const absl::Status& status);
  // An ack the server generates (a refused command). Dropped once the session has ended.
  void PushCommandAck(v1::CommandAck ack);
  // The reactor is gone: no further writer calls.
  void Detach();

  // Session id (from Open) for logs; 0 before.
  engine::SessionId session_id() const { return session_id_.load(); }
  // Undelivered events (queued + in flight).
  int PendingEvents() const;
  // True once the session has ended (its final status is known).
  bool Ended() const;
  // Times Congested() returned true; for tests and metrics.
  int64_t congested_polls() const { return congested_polls_.load(); }

  // --- engine::ChunkSink ---
  void OnQueued(int position, double estimated_start_seconds) override;
  void OnStarted() override;
  void OnProgress(int64_t block, int step, int num_steps) override;
  void OnChunk(engine::VideoChunk chunk) override;
  void OnCommandAck(const engine::CommandAck& ack) override;
  void OnCompleted(const engine::CompletionStats& stats) override;
  void OnFailed(const absl::Status& status) override;
  bool Congested() const override;

 private:
  enum class Action { kNone, kWrite, kFinish };
  // Decides the next writer call under the lock; performs it after releasing the lock.
  void Pump(std::unique_lock<std::mutex> lock);
  void PushLocked(v1::GenerateEvent event);
  void EndLocked(const absl::Status& status);
  void DropQueuedLocked();
  // Once per opened session: its outcome into the metrics, its quota back to its tenant.
  void RecordOutcomeLocked(const absl::Status& status);

  const OutboxOptions options_;
  const std::shared_ptr<SessionBroadcast> broadcast_;  // null without options_.broadcasts
  const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  std::atomic<engine::SessionId> session_id_{0};
  std::atomic<int> chunks_{0};  // chunk events queued + in flight
  mutable std::atomic<int64_t> congested_polls_{0};

  mutable std::mutex mu_;
  EventWriter* writer_;  // null after Detach
  bool opened_ = false;
  std::string tag_;  // the log tag; gains the session id at Open
  int fps_ = 16;
  std::optional<std::chrono::steady_clock::time_point> last_chunk_;
  int64_t chunks_delivered_ = 0;
  int64_t bytes_delivered_ = 0;
  std::deque<v1::GenerateEvent> queue_;
  std::unique_ptr<v1::GenerateEvent> in_flight_;
  std::optional<absl::Status> end_status_;  // set once the session has ended
  bool finish_started_ = false;
  bool outcome_recorded_ = false;
};

}  // namespace longsana::server
