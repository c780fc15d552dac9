// SessionOutbox (server/session_outbox) with a recording writer: ordering, one write in
// flight, coalescing, the congestion bound and finishing exactly once.
#include "server/session_outbox.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "server/proto_mapping.h"

namespace longsana::server {
namespace {

class RecordingWriter : public EventWriter {
 public:
  void StartEventWrite(const v1::GenerateEvent* event) override {
    EXPECT_EQ(in_flight, nullptr) << "two writes in flight";
    EXPECT_EQ(finishes, 0) << "write after finish";
    in_flight = event;
  }
  void FinishStream(const absl::Status& status) override {
    EXPECT_EQ(in_flight, nullptr) << "finish with a write in flight";
    ++finishes;
    final_status = status;
  }
  // Completes the write in flight (as gRPC's OnWriteDone would).
  bool Complete(SessionOutbox& outbox, bool ok = true) {
    if (in_flight == nullptr) return false;
    written.push_back(*in_flight);
    in_flight = nullptr;
    outbox.OnWriteDone(ok);
    return true;
  }
  void Drain(SessionOutbox& outbox) {
    while (Complete(outbox)) {
    }
  }

  const v1::GenerateEvent* in_flight = nullptr;
  std::vector<v1::GenerateEvent> written;
  int finishes = 0;
  absl::Status final_status;
};

engine::SessionInfo Info(engine::SessionId id = 3) {
  engine::SessionInfo info;
  info.id = id;
  info.num_frames = 81;
  info.num_blocks = 2;
  return info;
}

engine::VideoChunk Chunk(int64_t seq) {
  engine::VideoChunk c;
  c.sequence = seq;
  c.block_index = seq - 1;
  c.bytes = std::string(10, static_cast<char>('a' + seq));
  return c;
}

TEST(SessionOutbox, AcceptedComesFirstEvenWhenEventsArriveBeforeOpen) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{.max_chunks = 8}, &w);
  outbox->OnStarted();
  outbox->OnProgress(0, 1, 4);
  EXPECT_EQ(w.in_flight, nullptr);  // nothing is written before Open
  outbox->Open(Info());
  w.Drain(*outbox);
  ASSERT_EQ(w.written.size(), 2u);
  EXPECT_TRUE(w.written[0].has_accepted());
  EXPECT_EQ(w.written[0].accepted().session_id(), "3");
  EXPECT_TRUE(w.written[1].has_progress());
  EXPECT_EQ(w.finishes, 0);
}

TEST(SessionOutbox, ProgressCoalescesAndChunksNeverDrop) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{.max_chunks = 8}, &w);
  outbox->Open(Info());  // Accepted in flight; everything else queues behind it
  for (int step = 1; step <= 4; ++step) outbox->OnProgress(0, step, 4);
  outbox->OnChunk(Chunk(0));
  outbox->OnChunk(Chunk(1));
  for (int step = 1; step <= 3; ++step) outbox->OnProgress(1, step, 4);
  outbox->OnChunk(Chunk(2));
  outbox->OnCompleted(engine::CompletionStats{.frames = 81, .blocks = 2});
  w.Drain(*outbox);
  ASSERT_EQ(w.written.size(), 7u);
  EXPECT_TRUE(w.written[0].has_accepted());
  EXPECT_EQ(w.written[1].progress().step(), 4u);  // steps 1..3 coalesced into the last
  EXPECT_EQ(w.written[2].chunk().sequence(), 0u);
  EXPECT_EQ(w.written[3].chunk().sequence(), 1u);
  EXPECT_EQ(w.written[4].progress().block(), 1u);
  EXPECT_EQ(w.written[4].progress().step(), 3u);
  EXPECT_EQ(w.written[5].chunk().sequence(), 2u);
  EXPECT_TRUE(w.written[6].has_completed());
  EXPECT_EQ(w.finishes, 1);
  EXPECT_TRUE(w.final_status.ok());
}

TEST(SessionOutbox, CongestedWhileTheOutboxHoldsMaxChunks) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{.max_chunks = 2}, &w);
  outbox->Open(Info());
  EXPECT_FALSE(outbox->Congested());
  outbox->OnChunk(Chunk(0));
  EXPECT_FALSE(outbox->Congested());
  outbox->OnChunk(Chunk(1));
  EXPECT_TRUE(outbox->Congested());  // the reader has not taken anything yet
  w.Complete(*outbox);               // Accepted written; chunk 0 now in flight
  EXPECT_TRUE(outbox->Congested());
  w.Complete(*outbox);  // chunk 0 delivered
  EXPECT_FALSE(outbox->Congested());
  EXPECT_GE(outbox->congested_polls(), 2);
}

TEST(SessionOutbox, FailureDeliversQueuedChunksThenTheStatus) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{}, &w);
  outbox->Open(Info());
  outbox->OnChunk(Chunk(0));
  outbox->OnFailed(absl::UnavailableError("draining"));
  outbox->OnChunk(Chunk(1));  // after the end: dropped
  w.Drain(*outbox);
  ASSERT_EQ(w.written.size(), 2u);
  EXPECT_TRUE(w.written[1].has_chunk());
  EXPECT_EQ(w.finishes, 1);
  EXPECT_EQ(w.final_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(outbox->Congested());
}

TEST(SessionOutbox, AbortDropsPendingAndFinishesAfterTheWriteInFlight) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{}, &w);
  outbox->Open(Info());
  outbox->OnChunk(Chunk(0));
  outbox->OnChunk(Chunk(1));
  outbox->Abort(absl::CancelledError("client"));
  EXPECT_EQ(w.finishes, 0);  // Accepted still in flight
  EXPECT_TRUE(w.Complete(*outbox));
  EXPECT_EQ(w.in_flight, nullptr);
  EXPECT_EQ(w.finishes, 1);
  EXPECT_EQ(w.final_status.code(), absl::StatusCode::kCancelled);
  outbox->OnFailed(absl::CancelledError("engine saw the cancel"));  // no second finish
  outbox->Abort(absl::InternalError("again"));
  EXPECT_EQ(w.finishes, 1);
  EXPECT_FALSE(outbox->Congested());
}

TEST(SessionOutbox, BrokenWriteEndsTheStreamAsCancelled) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{}, &w);
  outbox->Open(Info());
  outbox->OnChunk(Chunk(0));
  EXPECT_TRUE(w.Complete(*outbox, /*ok=*/false));
  EXPECT_EQ(w.finishes, 1);
  EXPECT_EQ(w.final_status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(outbox->Ended());
}

TEST(SessionOutbox, AcksInOrderAndNoneAfterTheEnd) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{}, &w);
  outbox->Open(Info());
  outbox->OnCommandAck(
      engine::CommandAck{.command_id = 1, .effective_block = 1, .detail = "immediate"});
  outbox->PushCommandAck(ErrorAck(2, absl::InvalidArgumentError("extend.num_frames: 3")));
  outbox->OnCompleted(engine::CompletionStats{});
  outbox->PushCommandAck(ErrorAck(3, absl::NotFoundError("gone")));
  w.Drain(*outbox);
  ASSERT_EQ(w.written.size(), 4u);
  EXPECT_EQ(w.written[1].command_ack().command_id(), 1u);
  EXPECT_EQ(w.written[1].command_ack().effective_block(), 1u);
  EXPECT_EQ(w.written[1].command_ack().code(), 0);
  EXPECT_EQ(w.written[2].command_ack().command_id(), 2u);
  EXPECT_EQ(w.written[2].command_ack().code(), 3);
  EXPECT_TRUE(w.written[3].has_completed());
}

TEST(SessionOutbox, DetachStopsWriterCalls) {
  RecordingWriter w;
  auto outbox = std::make_shared<SessionOutbox>(OutboxOptions{}, &w);
  outbox->Open(Info());
  w.Complete(*outbox);
  outbox->Detach();
  outbox->OnChunk(Chunk(0));
  outbox->OnCompleted(engine::CompletionStats{});
  EXPECT_EQ(w.in_flight, nullptr);
  EXPECT_EQ(w.finishes, 0);
  EXPECT_EQ(w.written.size(), 1u);
}

}  // namespace
}  // namespace longsana::server
