#include "server/server_metrics.h"

#include <algorithm>
#include <string>
#include <utility>

namespace longsana::server {
namespace {

using metrics::ExponentialBuckets;

std::string CodeName(absl::StatusCode code) {
  // gRPC's names (absl's StatusCodeToString spells them the same, upper-cased).
  std::string name = absl::StatusCodeToString(code);
  for (char& c : name) {
    if (c == ' ') c = '_';
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

// Ended by the client (or its behaviour), not by a fault of the server.
bool EndedByClient(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return true;
    default:
      return false;
  }
}

std::vector<double> BatchBuckets(int max_batch) {
  std::vector<double> bounds;
  for (int b = 1; b <= std::max(1, max_batch); b = b < 4 ? b + 1 : b * 2) bounds.push_back(b);
  if (bounds.back() < max_batch) bounds.push_back(max_batch);
  return bounds;
}

}  // namespace

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kInvalid:
      return "invalid";
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kQuota:
      return "quota";
    case RejectReason::kPeerLimit:
      return "peer_limit";
    case RejectReason::kUnauthenticated:
      return "unauthenticated";
    case RejectReason::kPermissionDenied:
      return "permission_denied";
    case RejectReason::kNotFound:
      return "not_found";
    case RejectReason::kWatcherLimit:
      return "watcher_limit";
    case RejectReason::kDraining:
      return "draining";
    case RejectReason::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

ServerMetrics::ServerMetrics(const Options& options)
    : enabled_(options.enabled),
      accepted_(registry_.AddCounter("longsana_sessions_accepted_total",
                                     "Sessions accepted (admitted or queued).", {"tenant"})),
      ended_(registry_.AddCounter("longsana_sessions_ended_total",
                                  "Sessions ended, by final gRPC status code.",
                                  {"code", "tenant"})),
      rejections_(registry_.AddCounter("longsana_rejections_total",
                                       "Requests refused before they became a session.",
                                       {"reason", "tenant"})),
      commands_(registry_.AddCounter("longsana_commands_total",
                                     "Session commands, by type and outcome.",
                                     {"type", "outcome"})),
      queue_wait_(registry_
                      .AddHistogram("longsana_queue_wait_seconds",
                                    "From the request to the session's start (queue and "
                                    "prompt encoding).",
                                    ExponentialBuckets(0.01, 2.5, 12))
                      .Labels({})),
      ttfc_(registry_
                .AddHistogram("longsana_time_to_first_chunk_seconds",
                              "From the request to its first video fragment.",
                              ExponentialBuckets(0.05, 2, 14))
                .Labels({})),
      gap_(registry_
               .AddHistogram("longsana_inter_chunk_gap_seconds",
                             "Between consecutive video fragments of a session.",
                             ExponentialBuckets(0.05, 2, 14))
               .Labels({})),
      stages_(registry_.AddHistogram("longsana_block_stage_seconds",
                                     "Time a block spent in each stage (dit: its forwards, "
                                     "batched time; decode: VAE; encode: H.264).",
                                     ExponentialBuckets(0.01, 2, 16), {"stage"})),
      stage_dit_(stages_.Labels({"dit"})),
      stage_decode_(stages_.Labels({"decode"})),
      stage_encode_(stages_.Labels({"encode"})),
      rtf_(registry_
               .AddHistogram("longsana_session_realtime_factor",
                             "Video seconds generated per wall-clock second, per completed "
                             "session (>= 1: faster than real time).",
                             ExponentialBuckets(0.01, 2, 12))
               .Labels({})),
      switch_latency_(registry_
                          .AddHistogram("longsana_switch_visible_seconds",
                                        "From a switch_prompt's arrival to the hand-over of the "
                                        "first chunk made with its prompt.",
                                        ExponentialBuckets(0.05, 2, 12))
                          .Labels({})),
      switch_delay_(registry_
                        .AddHistogram("longsana_switch_playback_delay_seconds",
                                      "Seconds of the viewer's video between where it was when "
                                      "a switch_prompt arrived and the first frame made with "
                                      "its prompt.",
                                      ExponentialBuckets(0.25, 1.6, 12))
                        .Labels({})),
      batch_size_(registry_
                      .AddHistogram("longsana_step_batch_size",
                                    "Work items (sessions) per DiT forward.",
                                    BatchBuckets(options.max_batch))
                      .Labels({})),
      forward_seconds_(registry_
                           .AddHistogram("longsana_forward_seconds",
                                         "Wall time of one batched DiT forward.",
                                         ExponentialBuckets(0.005, 2, 14))
                           .Labels({})),
      forward_failures_(registry_
                            .AddCounter("longsana_forward_failures_total",
                                        "Batched DiT forwards that threw (retried one by one).")
                            .Labels({})),
      chunk_bytes_(registry_
                       .AddCounter("longsana_chunk_bytes_sent_total",
                                   "Bytes of video chunks written to clients.")
                       .Labels({})),
      chunks_(registry_.AddCounter("longsana_chunks_sent_total", "Video chunks written to clients.")
                  .Labels({})),
      watchers_(registry_
                    .AddGauge("longsana_watchers",
                              "Watch streams (extra viewers of running sessions) open now.")
                    .Labels({})),
      watch_skipped_(registry_
                         .AddCounter("longsana_watch_skipped_chunks_total",
                                     "Video fragments slow Watch viewers skipped (whole groups "
                                     "of pictures, to catch up with the session).")
                         .Labels({})),
      running_(
          registry_.AddGauge("longsana_sessions_running", "Sessions generating now.").Labels({})),
      queued_(registry_.AddGauge("longsana_sessions_queued", "Sessions waiting for a slot.")
                  .Labels({})),
      admissible_(registry_
                      .AddGauge("longsana_sessions_admissible",
                                "More default-size sessions that would start now (the "
                                "autoscaling signal).")
                      .Labels({})),
      max_sessions_(registry_.AddGauge("longsana_sessions_max", "Session slots (--max_sessions).")
                        .Labels({})),
      slot_bytes_(
          registry_
              .AddGauge("longsana_slot_bytes_in_use", "Bytes of session state slots reserved now.")
              .Labels({})),
      slot_budget_(registry_
                       .AddGauge("longsana_slot_bytes_budget",
                                 "Bytes session slots may use (0: only --max_sessions limits).")
                       .Labels({})),
      ready_gauge_(registry_
                       .AddGauge("longsana_ready",
                                 "1 when serving: models loaded and warmed up, not draining, "
                                 "no sticky device error.")
                       .Labels({})),
      draining_(
          registry_.AddGauge("longsana_draining", "1 while draining after SIGTERM.").Labels({})),
      realtime_load_(registry_
                         .AddGauge("longsana_realtime_load",
                                   "Share of the time budget the real-time (paced) sessions "
                                   "need, from their measured per-block cost "
                                   "(--realtime_utilization is the most admitted).")
                         .Labels({})) {
  registry_.AddGauge("longsana_build_info", "Build of this server (value 1).", {"version", "build"})
      .Labels({options.version, options.build})
      .Set(1);
  if (options.device_memory) {
    device_allocated_ = &registry_
                             .AddGauge("longsana_device_memory_allocated_bytes",
                                       "GPU memory in tensors (CUDA caching allocator).")
                             .Labels({});
    device_reserved_ = &registry_
                            .AddGauge("longsana_device_memory_reserved_bytes",
                                      "GPU memory held by the CUDA caching allocator.")
                            .Labels({});
  }
  registry_.AddScrapeHook([this] { Scrape(); });
}

void ServerMetrics::SetStatsSource(std::function<std::optional<engine::EngineStats>()> source) {
  std::lock_guard lock(source_mu_);
  stats_source_ = std::move(source);
}

void ServerMetrics::Scrape() {
  ready_gauge_.Set(ready_.load() ? 1 : 0);
  std::function<std::optional<engine::EngineStats>()> source;
  {
    std::lock_guard lock(source_mu_);
    source = stats_source_;
  }
  if (!source) return;
  const std::optional<engine::EngineStats> stats = source();
  if (!stats.has_value()) return;
  running_.Set(stats->running);
  queued_.Set(stats->queued);
  admissible_.Set(stats->admissible);
  max_sessions_.Set(stats->max_sessions);
  slot_bytes_.Set(static_cast<double>(stats->slot_bytes_in_use));
  slot_budget_.Set(static_cast<double>(stats->memory_budget_bytes));
  draining_.Set(stats->draining ? 1 : 0);
  realtime_load_.Set(stats->realtime_load);
  if (device_allocated_ != nullptr && stats->device_memory_allocated_bytes >= 0) {
    device_allocated_->Set(static_cast<double>(stats->device_memory_allocated_bytes));
    device_reserved_->Set(static_cast<double>(stats->device_memory_reserved_bytes));
  }
}

void ServerMetrics::Rejected(RejectReason reason, std::string_view tenant) {
  if (!enabled_) return;
  rejections_.Labels({std::string(RejectReasonName(reason)), std::string(tenant)}).Increment();
  rejected_.fetch_add(1);
}

void ServerMetrics::SessionAccepted(std::string_view tenant) {
  if (!enabled_) return;
  accepted_.Labels({std::string(tenant)}).Increment();
}

void ServerMetrics::SessionEnded(absl::StatusCode code, std::string_view tenant) {
  if (!enabled_) return;
  ended_.Labels({CodeName(code), std::string(tenant)}).Increment();
  if (code == absl::StatusCode::kOk) {
    completed_.fetch_add(1);
  } else if (EndedByClient(code)) {
    cancelled_.fetch_add(1);
  } else {
    failed_.fetch_add(1);
  }
}

void ServerMetrics::QueueWait(double seconds) {
  if (enabled_) queue_wait_.Observe(seconds);
}
void ServerMetrics::SwitchVisible(double latency_seconds, double playback_delay_seconds) {
  if (!enabled_) return;
  switch_latency_.Observe(latency_seconds);
  switch_delay_.Observe(std::max(0.0, playback_delay_seconds));
}

void ServerMetrics::TimeToFirstChunk(double seconds) {
  if (enabled_) ttfc_.Observe(seconds);
}
void ServerMetrics::InterChunkGap(double seconds) {
  if (enabled_) gap_.Observe(seconds);
}

void ServerMetrics::BlockStages(const engine::BlockTiming& timing) {
  if (!enabled_) return;
  stage_dit_.Observe(timing.dit_seconds);
  stage_decode_.Observe(timing.decode_seconds);
  stage_encode_.Observe(timing.encode_seconds);
}

void ServerMetrics::ChunkSent(int64_t bytes) {
  if (!enabled_) return;
  chunk_bytes_.Increment(static_cast<double>(bytes));
  chunks_.Increment();
}

void ServerMetrics::RealTimeFactor(double video_seconds_per_second) {
  if (!enabled_) return;
  rtf_.Observe(video_seconds_per_second);
}

void ServerMetrics::Command(std::string_view type, bool accepted) {
  if (!enabled_) return;
  commands_.Labels({std::string(type), accepted ? "accepted" : "refused"}).Increment();
}

void ServerMetrics::WatcherJoined() {
  if (enabled_) watchers_.Add(1);
}
void ServerMetrics::WatcherLeft() {
  if (enabled_) watchers_.Add(-1);
}
void ServerMetrics::WatchChunksSkipped(int64_t chunks) {
  if (enabled_) watch_skipped_.Increment(static_cast<double>(chunks));
}

void ServerMetrics::OnForward(const engine::ForwardSample& sample) {
  if (!enabled_) return;
  batch_size_.Observe(sample.items);
  forward_seconds_.Observe(sample.seconds);
  if (sample.failed) forward_failures_.Increment();
}

ServerMetrics::Totals ServerMetrics::totals() const {
  return {completed_.load(), failed_.load(), cancelled_.load(), rejected_.load()};
}

}  // namespace longsana::server
