#include "engine/runner/text_worker.h"

#include <c10/core/InferenceMode.h>

#include <map>

#include "engine/common/device_ops.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/runner/status_from_exception.h"

namespace longsana::engine {

void TextWorker::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void TextWorker::Stop() {
  {
    SessionRegistry::Lock lock(registry_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status TextWorker::RequestLocked(SessionRegistry::Lock&, const std::shared_ptr<Session>& s) {
  if (s->text_listed) return absl::OkStatus();  // coalesced with the queued request
  LONGSANA_RETURN_IF_ERROR(CheckRoomLocked());
  s->text_listed = true;
  queue_.push_back(s);
  cv_.notify_one();
  return absl::OkStatus();
}

absl::Status TextWorker::CheckRoomLocked() const {
  if (static_cast<int>(queue_.size()) >= queue_size_) {
    return absl::ResourceExhaustedError(
        StrCat("prompt encoding: ", queue_.size(),
               " sessions are already waiting for the text encoder (--text-queue-size); "
               "retry shortly"));
  }
  return absl::OkStatus();
}

void TextWorker::Loop() {
  c10::InferenceMode inference;
  // Encode on a stream of its own: a prompt switch never queues behind the runner's forwards.
  device::OwnStream stream(text_.encoder().device());
  SessionRegistry::Lock lock(registry_);
  while (true) {
    lock.Sync();
    cv_.wait(lock.raw(), [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    std::shared_ptr<Session> s = std::move(queue_.front());
    queue_.pop_front();
    s->text_listed = false;
    if (s->ended()) continue;

    // What to encode: the initial captions first, then the latest switch.
    std::vector<std::pair<int64_t, std::string>> prompts;  // block (-1: the prompt), text
    uint64_t generation = 0;
    const bool initial = !s->text_initial_taken;
    if (initial) {
      s->text_initial_taken = true;
      prompts.emplace_back(-1, s->spec.prompt);
      for (const auto& change : s->spec.prompt_timeline) {
        prompts.emplace_back(change.block, change.prompt);
      }
    } else if (s->text_switch) {
      const auto [block, gen] = *s->text_switch;
      s->text_switch.reset();
      auto it = s->switches.find(block);
      if (it == s->switches.end() || it->second.generation != gen) continue;
      prompts.emplace_back(block, it->second.prompt);
      generation = gen;
    } else {
      continue;
    }
    const int motion_score = s->spec.motion_score;
    lock.Unlock();

    absl::Status status;
    std::map<int64_t, Caption> captions;
    try {
      for (const auto& [block, prompt] : prompts) {
        auto caption = text_.Encode(prompt, motion_score);
        if (!caption.ok()) {
          status = caption.status();
          break;
        }
        captions[block] = *std::move(caption);
      }
    } catch (...) {
      status = StatusFromCurrentException("prompt encoding");
    }

    lock.Relock();
    if (s->ended()) continue;
    if (!status.ok()) {
      registry_.EndLocked(lock, *s, status);
      continue;
    }
    if (initial) {
      s->caption = std::move(captions[-1]);
      for (auto& [block, caption] : captions) {
        auto it = s->switches.find(block);
        if (block >= 0 && it != s->switches.end() && it->second.generation == 0) {
          it->second.caption = std::move(caption);
          it->second.ready = true;
        }
      }
      s->captions_ready = true;
    } else {
      const int64_t block = prompts[0].first;
      auto it = s->switches.find(block);
      if (it != s->switches.end() && it->second.generation == generation) {
        it->second.caption = std::move(captions[block]);
        it->second.ready = true;
      }
    }
    // A switch that arrived meanwhile: serve it after the sessions already waiting.
    if (s->text_switch && !s->text_listed) {
      s->text_listed = true;
      queue_.push_back(s);
    }
    registry_.Wake();
  }
}

}  // namespace longsana::engine
