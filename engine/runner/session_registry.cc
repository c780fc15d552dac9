#include "engine/runner/session_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace longsana::engine {

void SessionRegistry::Lock::Unlock() {
  if (lock_.owns_lock()) lock_.unlock();
  std::vector<std::shared_ptr<SessionEvents>> flush;
  flush.swap(to_flush_);
  for (const auto& events : flush) events->Flush();
}

SessionRegistry::SessionRegistry(const SchedulerLimits& limits) : scheduler_(limits) {
  std::random_device device;
  std::seed_seq seq{device(), device(), device(), device(),
                    static_cast<unsigned>(Clock::now().time_since_epoch().count())};
  ids_.seed(seq);
}

SessionId SessionRegistry::NewIdLocked() {
  while (true) {
    const SessionId id = ids_();
    if (id != 0 && sessions_.count(id) == 0) return id;
  }
}

absl::StatusOr<int> SessionRegistry::AddLocked(Lock&, const std::shared_ptr<Session>& s) {
  s->id = NewIdLocked();
  s->info.id = s->id;
  s->log_tag = FormatLogTag({s->id, s->spec.tenant, s->spec.request_id});
  auto position = scheduler_.Submit(
      {s->id, s->spec.priority, s->slot_bytes, s->lookahead_seconds >= 0, s->cost});
  if (!position.ok()) {
    ++counters_.rejected;
    return position.status();
  }
  s->stage = *position == 0 ? Session::Stage::kAdmitted : Session::Stage::kQueued;
  s->info.queue_position = *position;
  s->last_queue_position = 0;  // AdmitLocked sends the first Queued (with its estimate)
  sessions_[s->id] = s;
  Wake();
  return *position;
}

std::shared_ptr<Session> SessionRegistry::FindLocked(SessionId id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void SessionRegistry::EndLocked(Lock& lock, Session& s, const absl::Status& status) {
  if (s.ended()) return;
  const bool holds_resources = s.stage != Session::Stage::kQueued;
  s.stage = Session::Stage::kEnded;
  s.abort_decode.store(true);
  if (absl::IsCancelled(status) || absl::IsDeadlineExceeded(status)) {
    ++counters_.cancelled;
  } else {
    ++counters_.failed;
  }
  spdlog::info("{} ended: {}", s.log_tag, status.ToString());
  s.events->Fail(status);
  lock.Notify(s.events);
  if (!holds_resources) FinishReleaseLocked(s);
  Wake();
}

void SessionRegistry::CompleteLocked(Lock& lock, Session& s, CompletionStats stats) {
  if (s.ended()) return;
  s.stage = Session::Stage::kEnded;
  ++counters_.completed;
  avg_session_seconds_ = avg_session_seconds_ == 0
                             ? stats.total_seconds
                             : 0.8 * avg_session_seconds_ + 0.2 * stats.total_seconds;
  spdlog::info("{} finished: {} frames in {:.2f} s ({:.1f} fps), first chunk after {:.2f} s",
               s.log_tag, stats.frames, stats.total_seconds, stats.generation_fps,
               stats.time_to_first_chunk_seconds);
  s.events->Complete(std::move(stats));
  lock.Notify(s.events);
  Wake();
}

void SessionRegistry::AdmitLocked(Lock& lock) {
  for (SessionId id : scheduler_.AdmitFromQueue()) {
    if (auto s = FindLocked(id)) s->stage = Session::Stage::kAdmitted;
  }
  const auto queue = scheduler_.queue();
  if (queue.empty()) return;
  // The k-th queued session starts, roughly, when the k-th running one ends.
  const auto now = Clock::now();
  std::vector<double> ends;
  for (const auto& [id, s] : sessions_) {
    if (s->stage == Session::Stage::kAdmitted || s->stage == Session::Stage::kRunning) {
      ends.push_back(RemainingSecondsLocked(*s, now));
    }
  }
  std::sort(ends.begin(), ends.end());
  for (size_t i = 0; i < queue.size(); ++i) {
    auto s = FindLocked(queue[i]);
    const int position = static_cast<int>(i) + 1;
    if (!s || s->last_queue_position == position) continue;
    s->last_queue_position = position;
    double estimate = 0;
    if (!ends.empty()) {
      const size_t n = ends.size();
      estimate = ends[std::min(i, n - 1)];
      if (i >= n) estimate += avg_session_seconds_ * std::ceil(static_cast<double>(i + 1 - n) / n);
    }
    s->events->Queued(position, estimate);
    lock.Notify(s->events);
  }
}

double SessionRegistry::RemainingSecondsLocked(const Session& s, Clock::time_point now) const {
  const int fps = s.info.fps > 0 ? s.info.fps : 16;
  const double end = s.spec.live
                         ? static_cast<double>(FirstVideoFrame(s.live_limit_latent_frames)) / fps
                         : s.BlockStartSeconds(s.num_blocks(), fps);
  if (s.lookahead_seconds >= 0) {
    // Paced: its last block is made about `lookahead` before its viewer reaches the end.
    return std::max(0.0, end - s.lookahead_seconds - s.clock.Position(now));
  }
  // As fast as possible: the video left at its measured pace (real time when unmeasured).
  const double left = std::max(0.0, end - s.clock.delivered_seconds());
  return left * (s.load > 0 ? s.load : 1.0);
}

std::vector<std::shared_ptr<Session>> SessionRegistry::ReleasableLocked() const {
  std::vector<std::shared_ptr<Session>> out;
  for (const auto& [id, s] : sessions_) {
    if (s->stage == Session::Stage::kEnded && !s->in_flight && !s->media_busy) out.push_back(s);
  }
  return out;
}

void SessionRegistry::FinishReleaseLocked(Session& s) {
  s.stage = Session::Stage::kReleased;
  scheduler_.Remove(s.id);
  sessions_.erase(s.id);
  Wake();
}

}  // namespace longsana::engine
