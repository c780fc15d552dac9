// Watch fan-out: the extra viewers of a running session (rpc Watch).
//
// The engine has one ChunkSink per session, its owner's SessionOutbox; the outbox publishes
// each chunk and the session's end to the session's SessionBroadcast, which hands them to its
// viewers. Pieces:
//   - BroadcastRegistry: session id -> SessionBroadcast, for the sessions whose outbox has
//     opened and not yet ended. Watch looks sessions up here.
//   - SessionBroadcast: one per session (made with its outbox). Keeps what a viewer joining
//     now needs: the session's Accepted, the init segment, and the fragments since the most
//     recent keyframe (with one fragment per block: the latest fragment). Holds its viewers.
//   - BroadcastViewer: one per Watch stream: its own queue, one write in flight on its
//     stream (EventWriter, as SessionOutbox), finishing the stream once.
//
// What a viewer receives: Watching; the init segment; the fragments from the latest keyframe
// at its join on; Completed if the session completed; then the stream's end (OK, or the
// session's status) after everything queued before it.
//
// Bounds (never backpressure): a viewer holds at most `viewer_buffer_chunks` undelivered
// fragments (queued + in flight) when a group of pictures starts. A keyframe fragment that
// finds it full is dropped, and with it every fragment up to the next keyframe (the whole
// group, never part of one), and counted in skipped_chunks() and
// longsana_watch_skipped_chunks_total. So a slow viewer skips ahead to a later keyframe, and
// a viewer that never reads holds at most that buffer (plus the rest of an accepted group),
// while the session, its owner and other viewers go on at their own pace. The init segment,
// Watching and Completed are never dropped. Fragments are shared (immutable) between the
// broadcast and its viewers: one copy of the bytes per chunk, whatever the number of viewers.
//
// Threads and locks: every method of the three classes is thread-safe. Lock order:
// owner's outbox -> broadcast -> registry and broadcast -> viewer (the outbox publishes
// under its own lock, so its owner is never ahead of the viewers; Join looks the session
// up, releases the registry's lock, then takes the broadcast's); no broadcast or viewer
// lock is held while a viewer calls its EventWriter, at most one writer call per viewer at
// a time, none after Detach().
//
// Lifetimes: shared_ptr everywhere. The registry holds its broadcasts weakly (a broadcast
// leaves it at End() or destruction); a broadcast holds its registry and its viewers; a
// viewer holds nothing of its broadcast but a weak reference (to leave it at Detach()).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.pb.h"
#include "server/server_metrics.h"
#include "server/session_outbox.h"

namespace longsana::server {

class SessionBroadcast;
class BroadcastViewer;

using SharedEvent = std::shared_ptr<const v1::GenerateEvent>;

struct BroadcastOptions {
  int viewer_buffer_chunks = 4;      // --watch_buffer_chunks, >= 1
  int max_viewers_per_session = 16;  // --max_watchers_per_session, >= 1
  ServerMetrics* metrics = nullptr;  // optional; must outlive the registry
};

class BroadcastRegistry final : public std::enable_shared_from_this<BroadcastRegistry> {
 public:
  static std::shared_ptr<BroadcastRegistry> Create(BroadcastOptions options);

  // A broadcast for one session of `tenant` (its outbox's); not watchable before its Open.
  std::shared_ptr<SessionBroadcast> NewBroadcast(std::string tenant);

  // Adds a viewer of session `id` for a caller of `tenant`, writing to `writer`; the viewer
  // writes nothing before its Start(). `request_id` (this Watch call's) goes into Watching.
  // NotFound naming session_id for an unknown or ended session, and for a session of another
  // tenant (indistinguishable on purpose); ResourceExhausted naming
  // --max_watchers_per_session when the session has that many viewers.
  absl::StatusOr<std::shared_ptr<BroadcastViewer>> Join(engine::SessionId id,
                                                        std::string_view tenant,
                                                        std::string request_id,
                                                        EventWriter* writer);

  // Watchable sessions now.
  int sessions() const;
  const BroadcastOptions& options() const { return options_; }

 private:
  friend class SessionBroadcast;
  explicit BroadcastRegistry(BroadcastOptions options) : options_(options) {}
  struct Entry {
    const SessionBroadcast* broadcast = nullptr;  // identifies the entry after expiry
    std::weak_ptr<SessionBroadcast> weak;
  };
  void Register(engine::SessionId id, const SessionBroadcast* broadcast,
                std::weak_ptr<SessionBroadcast> weak);
  void Unregister(engine::SessionId id, const SessionBroadcast* broadcast);

  const BroadcastOptions options_;
  mutable std::mutex mu_;
  std::map<engine::SessionId, Entry> sessions_;
};

// The publishing side, called by the session's outbox in the engine's event order.
class SessionBroadcast final : public std::enable_shared_from_this<SessionBroadcast> {
 public:
  SessionBroadcast(std::shared_ptr<BroadcastRegistry> registry, std::string tenant);
  ~SessionBroadcast();

  // The session was accepted (its owner's Accepted); from now on it can be watched. Once;
  // ignored after End.
  void Open(engine::SessionId id, v1::Accepted accepted);
  // A VideoChunk event (the init segment, or a fragment whose chunk().keyframe() marks a
  // group start). Ignored after End.
  void Publish(SharedEvent chunk);
  // The session ended: `last` (Completed, or null) and then `status` go to every viewer
  // after what it has queued; the session can no longer be watched. Idempotent.
  void End(const absl::Status& status, SharedEvent last = nullptr);

  int viewers() const;

 private:
  friend class BroadcastRegistry;
  friend class BroadcastViewer;
  // Under the registry's lock (Join): the tenant check, the cap, the backlog.
  absl::StatusOr<std::shared_ptr<BroadcastViewer>> AddViewer(std::string_view tenant,
                                                             std::string request_id,
                                                             EventWriter* writer);
  void RemoveViewer(const BroadcastViewer* viewer);

  const std::shared_ptr<BroadcastRegistry> registry_;
  const std::string tenant_;
  mutable std::mutex mu_;
  engine::SessionId id_ = 0;
  std::optional<v1::Accepted> accepted_;  // set at Open
  SharedEvent init_;
  std::deque<SharedEvent> group_;  // the fragments since the latest keyframe
  std::map<const BroadcastViewer*, std::shared_ptr<BroadcastViewer>> viewers_;
  bool ended_ = false;
};

// One Watch stream's queue. The reactor calls Start once it can take writer calls, forwards
// OnWriteDone, calls Abort on cancel and Detach from OnDone.
class BroadcastViewer final {
 public:
  BroadcastViewer(std::weak_ptr<SessionBroadcast> broadcast, int buffer_chunks,
                  ServerMetrics* metrics, EventWriter* writer);
  ~BroadcastViewer();

  // Starts writing (the events queued since Join first).
  void Start();
  // The write in flight finished; ok = false: the stream is broken, finish as cancelled.
  void OnWriteDone(bool ok);
  // Ends this stream early (the client cancelled): drops what is queued, finishes with
  // `status` once no write is in flight. The session is not affected.
  void Abort(const absl::Status& status);
  // The reactor is gone: no further writer calls; leaves the broadcast.
  void Detach();

  // Fragments dropped for this viewer (whole groups of pictures).
  int64_t skipped_chunks() const;
  // Undelivered events (queued + in flight).
  int pending_events() const;

 private:
  friend class SessionBroadcast;
  // Under the broadcast's lock: queue or drop (see the file comment). True when the viewer
  // may need a write started (call Pump after releasing the broadcast's lock).
  bool Offer(SharedEvent event);
  bool OfferEnd(const absl::Status& status, SharedEvent last);
  void Pump(std::unique_lock<std::mutex> lock);
  void PumpNow() { Pump(std::unique_lock(mu_)); }

  const std::weak_ptr<SessionBroadcast> broadcast_;
  const int buffer_chunks_;
  ServerMetrics* const metrics_;
  mutable std::mutex mu_;
  EventWriter* writer_;  // null after Detach
  bool started_ = false;
  std::deque<SharedEvent> queue_;
  SharedEvent in_flight_;
  int chunks_ = 0;              // fragments queued + in flight
  bool skipping_group_ = true;  // until the first keyframe, and while a group is dropped
  int64_t skipped_ = 0;
  std::optional<absl::Status> end_status_;
  bool finish_started_ = false;
  bool detached_ = false;
};

}  // namespace longsana::server
