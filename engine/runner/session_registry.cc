#include "engine/runner/session_registry.h"

#include <spdlog/spdlog.h>

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
  auto position = scheduler_.Submit({s->id, s->spec.priority, s->slot_bytes});
  if (!position.ok()) {
    ++counters_.rejected;
    return position.status();
  }
  s->stage = *position == 0 ? Session::Stage::kAdmitted : Session::Stage::kQueued;
  s->info.queue_position = *position;
  s->last_queue_position = *position;
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
  const int running = std::max(1, scheduler_.running());
  for (size_t i = 0; i < queue.size(); ++i) {
    auto s = FindLocked(queue[i]);
    const int position = static_cast<int>(i) + 1;
    if (!s || s->last_queue_position == position) continue;
    s->last_queue_position = position;
    s->events->Queued(position,
                      avg_session_seconds_ * std::ceil(static_cast<double>(position) / running));
    lock.Notify(s->events);
  }
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
