// The server's Prometheus metrics (served at /metrics on the HTTP port), named by Prometheus
// conventions: `longsana_` prefix, base units (seconds, bytes), `_total` counters.
//
// Who records what:
//   - SessionOutbox (per session, engine threads): queue wait, time to first chunk,
//     inter-chunk gap, block latency by stage, chunk bytes sent, real-time factor, the
//     session's outcome (gRPC code) when its stream ends.
//   - The service (gRPC threads): rejections by reason, commands by type and outcome.
//   - Watch viewers (server/session_broadcast): viewers now, fragments skipped for slow ones.
//   - The engine, through EngineObserver (runner thread): step batch size, forward seconds.
//   - A scrape hook: sessions running / queued / admissible, slot bytes, device memory,
//     readiness, from Engine::Stats() at scrape time.
// Recording is lock-free (metrics::Registry); the per-tenant children are looked up under
// the family's lock, once per session event, never per sample of a hot loop.
//
// Thread-safe. Lives as long as the Server; the engine holds it as its observer.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "engine/api/engine.h"
#include "server/metrics/metrics.h"

namespace longsana::server {

// Why a request was refused before it became a session.
enum class RejectReason {
  kInvalid,           // INVALID_ARGUMENT: a bad request
  kQueueFull,         // RESOURCE_EXHAUSTED: the engine's queue (or text queue) is full
  kQuota,             // RESOURCE_EXHAUSTED: the tenant's max_sessions / max_queued
  kPeerLimit,         // RESOURCE_EXHAUSTED: --max_sessions_per_peer
  kUnauthenticated,   // UNAUTHENTICATED: no or an unknown token
  kPermissionDenied,  // PERMISSION_DENIED: e.g. priority above the tenant's ceiling
  kNotFound,          // NOT_FOUND: Watch of an unknown, ended or other tenant's session
  kWatcherLimit,      // RESOURCE_EXHAUSTED: --max_watchers_per_session
  kDraining,          // UNAVAILABLE: shutting down
  kUnavailable,       // UNAVAILABLE: loading, load failed or unhealthy
};
std::string_view RejectReasonName(RejectReason reason);

class ServerMetrics final : public engine::EngineObserver {
 public:
  struct Options {
    std::string version;  // build info labels
    std::string build;
    bool device_memory = false;  // export the device memory gauges (CUDA)
    int max_batch = 8;           // the step batch size histogram's range
    // false: every recording call returns at once (for benchmarks measuring their cost);
    // /metrics still serves the scrape-time gauges.
    bool enabled = true;
  };
  explicit ServerMetrics(const Options& options);

  metrics::Registry& registry() { return registry_; }
  std::string Serialize() const { return registry_.Serialize(); }

  // What the scrape hook reads: the engine's stats (nullopt while loading) and readiness.
  void SetStatsSource(std::function<std::optional<engine::EngineStats>()> source);
  void SetReady(bool ready) { ready_.store(ready); }

  void Rejected(RejectReason reason, std::string_view tenant);
  void SessionAccepted(std::string_view tenant);
  void SessionEnded(absl::StatusCode code, std::string_view tenant);
  void QueueWait(double seconds);
  void TimeToFirstChunk(double seconds);
  void InterChunkGap(double seconds);
  void BlockStages(const engine::BlockTiming& timing);
  void ChunkSent(int64_t bytes);
  void RealTimeFactor(double video_seconds_per_second);
  // A switch_prompt became visible (VideoChunk::switch_visible).
  void SwitchVisible(double latency_seconds, double playback_delay_seconds);
  // type: "switch_prompt", "extend", "stop" or "invalid"; outcome: accepted or refused.
  void Command(std::string_view type, bool accepted);
  // Watch viewers: one joined / left (longsana_watchers); fragments a slow viewer skipped
  // (longsana_watch_skipped_chunks_total).
  void WatcherJoined();
  void WatcherLeft();
  void WatchChunksSkipped(int64_t chunks);

  void OnForward(const engine::ForwardSample& sample) override;

  // Totals for GetServerInfo's capacity counters: completed (OK), cancelled (ended by the
  // client: cancel, deadline, disconnect, protocol error, stall), failed (ended by a server
  // error), rejected (refused before starting, invalid requests included).
  struct Totals {
    uint64_t completed = 0, failed = 0, cancelled = 0, rejected = 0;
  };
  Totals totals() const;

 private:
  void Scrape();

  const bool enabled_;
  metrics::Registry registry_;
  metrics::Family<metrics::Counter>& accepted_;
  metrics::Family<metrics::Counter>& ended_;
  metrics::Family<metrics::Counter>& rejections_;
  metrics::Family<metrics::Counter>& commands_;
  metrics::Histogram& queue_wait_;
  metrics::Histogram& ttfc_;
  metrics::Histogram& gap_;
  metrics::Family<metrics::Histogram>& stages_;
  metrics::Histogram& stage_dit_;
  metrics::Histogram& stage_decode_;
  metrics::Histogram& stage_encode_;
  metrics::Histogram& rtf_;
  metrics::Histogram& switch_latency_;
  metrics::Histogram& switch_delay_;
  metrics::Histogram& batch_size_;
  metrics::Histogram& forward_seconds_;
  metrics::Counter& forward_failures_;
  metrics::Counter& chunk_bytes_;
  metrics::Counter& chunks_;
  metrics::Gauge& watchers_;
  metrics::Counter& watch_skipped_;
  metrics::Gauge& running_;
  metrics::Gauge& queued_;
  metrics::Gauge& admissible_;
  metrics::Gauge& max_sessions_;
  metrics::Gauge& slot_bytes_;
  metrics::Gauge& slot_budget_;
  metrics::Gauge& ready_gauge_;
  metrics::Gauge& draining_;
  metrics::Gauge& realtime_load_;
  metrics::Gauge* device_allocated_ = nullptr;
  metrics::Gauge* device_reserved_ = nullptr;

  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> completed_{0}, failed_{0}, cancelled_{0}, rejected_{0};
  mutable std::mutex source_mu_;
  std::function<std::optional<engine::EngineStats>()> stats_source_;
};

}  // namespace longsana::server
