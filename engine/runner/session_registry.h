// SessionRegistry: the sessions of one engine — ids, stages, slots — and the one lock that
// the API threads, the runner and the workers share. Private to engine/runner.
//
// Every *Locked method needs a SessionRegistry::Lock held on this registry. A Lock collects
// the sessions whose events were pushed while it was held and flushes them after it is
// released, so sink callbacks never run under the lock (and may call back into the
// engine). Slots (the scheduler's bytes and count) are freed only by FinishReleaseLocked,
// after the session's memory is: see Session.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runner/session.h"
#include "engine/scheduler/scheduler.h"

namespace longsana::engine {

class SessionRegistry {
 public:
  class Lock {
   public:
    explicit Lock(SessionRegistry& registry) : registry_(registry), lock_(registry.mu_) {}
    ~Lock() { Unlock(); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

    // Flush `events` once this lock is released.
    void Notify(const std::shared_ptr<SessionEvents>& events) { to_flush_.push_back(events); }
    // Releases the lock (if held), then flushes what was notified.
    void Unlock();
    void Relock() { lock_.lock(); }
    // Flushes what was notified so far (releasing and retaking the lock) before a wait.
    void Sync() {
      if (to_flush_.empty()) return;
      Unlock();
      Relock();
    }
    std::unique_lock<std::mutex>& raw() { return lock_; }  // for condition variables
    SessionRegistry& registry() { return registry_; }

   private:
    SessionRegistry& registry_;
    std::unique_lock<std::mutex> lock_;
    std::vector<std::shared_ptr<SessionEvents>> to_flush_;
  };

  explicit SessionRegistry(const SchedulerLimits& limits);

  // Gives `s` a fresh, globally unique id and a slot or a queue position (0: admitted).
  // ResourceExhausted (queue full) or InvalidArgument (slot over the budget) from the
  // scheduler; the session is then not registered.
  absl::StatusOr<int> AddLocked(Lock& lock, const std::shared_ptr<Session>& s);
  std::shared_ptr<Session> FindLocked(SessionId id) const;
  const std::map<SessionId, std::shared_ptr<Session>>& SessionsLocked() const { return sessions_; }

  // Ends a session with `status` (its sink gets OnFailed), or with OnCompleted(stats). A
  // session without resources (queued) is released at once. No-op once ended.
  void EndLocked(Lock& lock, Session& s, const absl::Status& status);
  void CompleteLocked(Lock& lock, Session& s, CompletionStats stats);

  // Admits queued sessions that now fit and tells the rest their new positions.
  void AdmitLocked(Lock& lock);
  // Ended sessions that neither the runner nor a media worker holds.
  std::vector<std::shared_ptr<Session>> ReleasableLocked() const;
  // After the caller destroyed `s`'s resources: frees its slot and forgets it.
  void FinishReleaseLocked(Session& s);

  Scheduler& scheduler() { return scheduler_; }
  const Scheduler& scheduler() const { return scheduler_; }
  EngineStats& counters() { return counters_; }
  // The runner and Drain wait on this; notified whenever sessions change.
  std::condition_variable& changed() { return changed_; }
  void Wake() { changed_.notify_all(); }

  // Guarded by the lock.
  bool draining = false;
  bool stopping = false;

 private:
  SessionId NewIdLocked();
  // Seconds until a running session is expected to end (for Queued estimates).
  double RemainingSecondsLocked(const Session& s, Clock::time_point now) const;

  std::mutex mu_;
  std::condition_variable changed_;
  Scheduler scheduler_;
  std::map<SessionId, std::shared_ptr<Session>> sessions_;
  std::mt19937_64 ids_;
  EngineStats counters_;
  double avg_session_seconds_ = 0;  // for queue start estimates
};

}  // namespace longsana::engine
