// A FIFO of jobs for one worker thread: producers push, the worker pops until closed.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace longsana::engine {

template <typename Job>
class WorkQueue {
 public:
  void Push(Job job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  void PushAll(std::vector<Job> jobs) {
    if (jobs.empty()) return;
    {
      std::lock_guard lock(mu_);
      for (auto& job : jobs) jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // Blocks until a job is there or the queue is closed; nullopt once closed (jobs still
  // queued then are dropped: their owner is shutting down).
  std::optional<Job> Pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !jobs_.empty(); });
    if (closed_) return std::nullopt;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    return job;
  }
  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool closed_ = false;
};

}  // namespace longsana::engine
