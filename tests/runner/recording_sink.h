// A ChunkSink that records every event, for engine tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/api/engine.h"

namespace longsana::testing {

class RecordingSink : public engine::ChunkSink {
 public:
  void OnQueued(int position, double estimated_start_seconds) override {
    std::lock_guard lock(mu_);
    queued.push_back(position);
    queued_estimates.push_back(estimated_start_seconds);
  }
  void OnStarted() override {
    std::lock_guard lock(mu_);
    started = true;
    started_at = std::chrono::steady_clock::now();
  }
  void OnProgress(int64_t block, int step, int num_steps) override {
    std::lock_guard lock(mu_);
    progress.push_back({block, step});
    (void)num_steps;
  }
  void OnChunk(engine::VideoChunk chunk) override {
    std::function<void(const engine::VideoChunk&)> hook;
    {
      std::lock_guard lock(mu_);
      EXPECT_FALSE(done) << "a chunk after the terminal event";
      chunks.push_back(chunk);
      hook = on_chunk;
    }
    if (hook) hook(chunk);
    cv_.notify_all();
  }
  void OnCommandAck(const engine::CommandAck& ack) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(done) << "an ack after the terminal event";
    acks.push_back(ack);
  }
  void OnCompleted(const engine::CompletionStats& s) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(done) << "two terminal events";
    stats = s;
    done = true;
    done_at = std::chrono::steady_clock::now();
    cv_.notify_all();
  }
  void OnFailed(const absl::Status& s) override {
    std::lock_guard lock(mu_);
    EXPECT_FALSE(done) << "two terminal events";
    status = s;
    done = true;
    cv_.notify_all();
  }
  bool Congested() const override { return congested.load(); }

  // Waits until the session ended; false on timeout.
  bool WaitDone(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done; });
  }
  bool WaitChunks(size_t n, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return chunks.size() >= n || done; }) &&
           chunks.size() >= n;
  }
  // A short digest of the concatenated video (size + hash), so mismatches print readably.
  std::string Video() {
    std::lock_guard lock(mu_);
    std::string all;
    for (const auto& c : chunks) all += c.bytes;
    return std::to_string(all.size()) + ":" + std::to_string(std::hash<std::string>{}(all));
  }
  std::string ChunkDigest(size_t i) {
    std::lock_guard lock(mu_);
    const std::string& b = chunks.at(i).bytes;
    return std::to_string(b.size()) + ":" + std::to_string(std::hash<std::string>{}(b));
  }
  // Sets the hook called (outside the lock) after each chunk.
  void SetOnChunk(std::function<void(const engine::VideoChunk&)> hook) {
    std::lock_guard lock(mu_);
    on_chunk = std::move(hook);
  }
  std::vector<engine::CommandAck> Acks() {
    std::lock_guard lock(mu_);
    return acks;
  }
  size_t NumChunks() {
    std::lock_guard lock(mu_);
    return chunks.size();
  }
  size_t NumProgress() {
    std::lock_guard lock(mu_);
    return progress.size();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> queued;
  std::vector<double> queued_estimates;
  bool started = false;
  std::chrono::steady_clock::time_point started_at, done_at;
  std::vector<std::pair<int64_t, int>> progress;
  std::vector<engine::VideoChunk> chunks;
  std::vector<engine::CommandAck> acks;
  engine::CompletionStats stats;
  absl::Status status;
  bool done = false;
  std::atomic<bool> congested{false};
  std::function<void(const engine::VideoChunk&)> on_chunk;  // called outside the lock
};

}  // namespace longsana::testing
