// SessionBroadcast / BroadcastViewer (server/session_broadcast) without gRPC: where a viewer
// joins, how a slow one skips whole groups of pictures, the end after the queued chunks, the
// lookup errors, and the outbox publishing to it.
#include "server/session_broadcast.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "server/proto_mapping.h"
#include "server/session_outbox.h"

namespace longsana::server {
namespace {

constexpr engine::SessionId kId = 42;

// Records the events a viewer writes, as short labels: W (Watching), I (init), K<seq>
// (keyframe fragment), D<seq> (other fragment), C (Completed), A (Accepted).
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
  template <typename Target>
  bool Complete(Target& target, bool ok = true) {
    if (in_flight == nullptr) return false;
    written.push_back(Label(*in_flight));
    events.push_back(*in_flight);
    in_flight = nullptr;
    target.OnWriteDone(ok);
    return true;
  }
  template <typename Target>
  void Drain(Target& target) {
    while (Complete(target)) {
    }
  }

  static std::string Label(const v1::GenerateEvent& e) {
    switch (e.event_case()) {
      case v1::GenerateEvent::kWatching:
        return "W";
      case v1::GenerateEvent::kAccepted:
        return "A";
      case v1::GenerateEvent::kCompleted:
        return "C";
      case v1::GenerateEvent::kChunk:
        if (e.chunk().block_index() < 0) return "I";
        return (e.chunk().keyframe() ? "K" : "D") + std::to_string(e.chunk().sequence());
      default:
        return "?";
    }
  }

  const v1::GenerateEvent* in_flight = nullptr;
  std::vector<std::string> written;
  std::vector<v1::GenerateEvent> events;
  int finishes = 0;
  absl::Status final_status;
};

SharedEvent Init() {
  auto e = std::make_shared<v1::GenerateEvent>();
  e->mutable_chunk()->set_sequence(0);
  e->mutable_chunk()->set_block_index(-1);
  e->mutable_chunk()->set_data("init");
  return e;
}

SharedEvent Fragment(uint64_t sequence, bool keyframe) {
  auto e = std::make_shared<v1::GenerateEvent>();
  e->mutable_chunk()->set_sequence(sequence);
  e->mutable_chunk()->set_block_index(static_cast<int32_t>(sequence));
  e->mutable_chunk()->set_num_frames(4);
  e->mutable_chunk()->set_keyframe(keyframe);
  e->mutable_chunk()->set_data("frag" + std::to_string(sequence));
  return e;
}

SharedEvent CompletedEvent() {
  auto e = std::make_shared<v1::GenerateEvent>();
  e->mutable_completed()->set_frames(81);
  return e;
}

v1::Accepted AcceptedOf(engine::SessionId id) {
  v1::Accepted a;
  a.set_session_id(std::to_string(id));
  a.set_request_id("owner-request");
  a.set_queue_position(2);
  a.set_num_frames(81);
  return a;
}

// A script over one broadcast and one viewer; what the viewer wrote is compared at the end.
struct Step {
  enum Op { kInit, kKey, kDelta, kJoin, kWrite, kWriteAll, kComplete, kFail } op;
  uint64_t sequence = 0;  // kKey / kDelta
};

struct Case {
  std::string name;
  int buffer = 4;
  std::vector<Step> steps;
  std::vector<std::string> written;  // after the script, with every write completed
  int64_t skipped = 0;
  absl::StatusCode final_code = absl::StatusCode::kOk;
};

class BroadcastScript : public ::testing::TestWithParam<Case> {};

TEST_P(BroadcastScript, DeliversWhatTheTableSays) {
  const Case& c = GetParam();
  auto registry = BroadcastRegistry::Create({.viewer_buffer_chunks = c.buffer});
  auto broadcast = registry->NewBroadcast("tenant-a");
  broadcast->Open(kId, AcceptedOf(kId));
  RecordingWriter writer;
  std::shared_ptr<BroadcastViewer> viewer;
  for (const Step& step : c.steps) {
    switch (step.op) {
      case Step::kInit:
        broadcast->Publish(Init());
        break;
      case Step::kKey:
      case Step::kDelta:
        broadcast->Publish(Fragment(step.sequence, step.op == Step::kKey));
        break;
      case Step::kJoin: {
        auto joined = registry->Join(kId, "tenant-a", "viewer-request", &writer);
        ASSERT_TRUE(joined.ok()) << joined.status();
        viewer = *joined;
        viewer->Start();
        break;
      }
      case Step::kWrite:
        ASSERT_NE(viewer, nullptr);
        writer.Complete(*viewer);
        break;
      case Step::kWriteAll:
        ASSERT_NE(viewer, nullptr);
        writer.Drain(*viewer);
        break;
      case Step::kComplete:
        broadcast->End(absl::OkStatus(), CompletedEvent());
        break;
      case Step::kFail:
        broadcast->End(absl::UnavailableError("draining"));
        break;
    }
  }
  ASSERT_NE(viewer, nullptr);
  writer.Drain(*viewer);
  EXPECT_EQ(writer.written, c.written);
  EXPECT_EQ(viewer->skipped_chunks(), c.skipped);
  EXPECT_EQ(writer.finishes, 1);
  EXPECT_EQ(writer.final_status.code(), c.final_code);
  viewer->Detach();
}

using S = Step;
INSTANTIATE_TEST_SUITE_P(
    Table, BroadcastScript,
    ::testing::Values(
        Case{"JoinBeforeAnyChunk",
             4,
             {{S::kJoin}, {S::kInit}, {S::kKey, 1}, {S::kKey, 2}, {S::kComplete}},
             {"W", "I", "K1", "K2", "C"}},
        Case{"JoinMidSessionStartsAtTheLatestKeyframe",
             4,
             {{S::kInit}, {S::kKey, 1}, {S::kKey, 2}, {S::kJoin}, {S::kKey, 3}, {S::kComplete}},
             {"W", "I", "K2", "K3", "C"}},
        Case{"JoinMidGroupGetsTheWholeGroup",
             4,
             {{S::kInit},
              {S::kKey, 1},
              {S::kDelta, 2},
              {S::kKey, 3},
              {S::kDelta, 4},
              {S::kJoin},
              {S::kDelta, 5},
              {S::kComplete}},
             {"W", "I", "K3", "D4", "D5", "C"}},
        // Buffer 2, nothing written: K1 in flight, K2 queued (2 undelivered): K3 and K4 are
        // skipped; once the viewer catches up K5 is taken.
        Case{"SlowViewerSkipsToTheNextKeyframe",
             2,
             {{S::kJoin},
              {S::kInit},
              {S::kKey, 1},
              {S::kKey, 2},
              {S::kKey, 3},
              {S::kKey, 4},
              {S::kWriteAll},
              {S::kKey, 5},
              {S::kComplete}},
             {"W", "I", "K1", "K2", "K5", "C"},
             2},
        // A group is kept or dropped whole: D2 follows its accepted keyframe past the
        // bound; the group of K3 is dropped with its D4, never cut.
        Case{"SkipsWholeGroupsOnly",
             2,
             {{S::kJoin},
              {S::kInit},
              {S::kKey, 1},
              {S::kDelta, 2},
              {S::kKey, 3},
              {S::kDelta, 4},
              {S::kWriteAll},
              {S::kKey, 5},
              {S::kDelta, 6},
              {S::kComplete}},
             {"W", "I", "K1", "D2", "K5", "D6", "C"},
             2},
        Case{"EndAfterTheQueuedChunks",
             4,
             {{S::kJoin}, {S::kInit}, {S::kKey, 1}, {S::kKey, 2}, {S::kFail}},
             {"W", "I", "K1", "K2"},
             0,
             absl::StatusCode::kUnavailable},
        Case{"ChunksAfterTheEndAreIgnored",
             4,
             {{S::kJoin}, {S::kInit}, {S::kKey, 1}, {S::kComplete}, {S::kKey, 2}},
             {"W", "I", "K1", "C"}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(BroadcastRegistryTest, WatchingCarriesTheSessionAndTheViewersRequestId) {
  auto registry = BroadcastRegistry::Create({});
  auto broadcast = registry->NewBroadcast("t");
  broadcast->Open(kId, AcceptedOf(kId));
  RecordingWriter writer;
  auto viewer = registry->Join(kId, "t", "viewer-request", &writer);
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  (*viewer)->Start();
  ASSERT_TRUE(writer.Complete(**viewer));
  const v1::Watching& w = writer.events.at(0).watching();
  EXPECT_EQ(w.session().session_id(), std::to_string(kId));
  EXPECT_EQ(w.session().request_id(), "viewer-request");
  EXPECT_EQ(w.session().queue_position(), 0u);
  EXPECT_EQ(w.session().num_frames(), 81u);
  EXPECT_EQ(w.viewers(), 1u);
  (*viewer)->Detach();
}

TEST(BroadcastRegistryTest, LookupErrors) {
  auto registry = BroadcastRegistry::Create({.max_viewers_per_session = 2});
  RecordingWriter writer;
  // Unknown; not yet opened.
  EXPECT_TRUE(absl::IsNotFound(registry->Join(kId, "t", "", &writer).status()));
  auto broadcast = registry->NewBroadcast("t");
  EXPECT_TRUE(absl::IsNotFound(registry->Join(kId, "t", "", &writer).status()));
  broadcast->Open(kId, AcceptedOf(kId));
  EXPECT_EQ(registry->sessions(), 1);
  // Another tenant: the same answer as for an unknown session.
  const absl::Status other = registry->Join(kId, "u", "", &writer).status();
  EXPECT_TRUE(absl::IsNotFound(other)) << other;
  EXPECT_EQ(other.message(), "session_id: no running session 42");
  EXPECT_EQ(registry->Join(kId + 1, "t", "", &writer).status().message(),
            "session_id: no running session 43");
  // The cap.
  RecordingWriter w1, w2;
  auto v1 = registry->Join(kId, "t", "", &w1);
  auto v2 = registry->Join(kId, "t", "", &w2);
  ASSERT_TRUE(v1.ok() && v2.ok());
  const absl::Status third = registry->Join(kId, "t", "", &writer).status();
  EXPECT_TRUE(absl::IsResourceExhausted(third)) << third;
  EXPECT_NE(std::string(third.message()).find("--max_watchers_per_session"), std::string::npos);
  // A viewer that leaves frees its place.
  (*v2)->Detach();
  EXPECT_EQ(broadcast->viewers(), 1);
  auto v3 = registry->Join(kId, "t", "", &w2);
  EXPECT_TRUE(v3.ok()) << v3.status();
  // Late join after the end.
  broadcast->End(absl::OkStatus());
  EXPECT_EQ(registry->sessions(), 0);
  EXPECT_TRUE(absl::IsNotFound(registry->Join(kId, "t", "", &writer).status()));
  (*v1)->Detach();
  (*v3)->Detach();
}

TEST(BroadcastRegistryTest, ADroppedBroadcastLeavesTheRegistry) {
  auto registry = BroadcastRegistry::Create({});
  {
    auto broadcast = registry->NewBroadcast("t");
    broadcast->Open(kId, AcceptedOf(kId));
    EXPECT_EQ(registry->sessions(), 1);
  }
  EXPECT_EQ(registry->sessions(), 0);
}

TEST(BroadcastViewerTest, OneViewerStuckDoesNotHoldBackAnother) {
  auto registry = BroadcastRegistry::Create({.viewer_buffer_chunks = 2});
  auto broadcast = registry->NewBroadcast("t");
  broadcast->Open(kId, AcceptedOf(kId));
  RecordingWriter stuck, fast;
  auto s = registry->Join(kId, "t", "", &stuck);
  auto f = registry->Join(kId, "t", "", &fast);
  ASSERT_TRUE(s.ok() && f.ok());
  (*s)->Start();
  (*f)->Start();
  broadcast->Publish(Init());
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    broadcast->Publish(Fragment(seq, true));
    fast.Drain(**f);
  }
  broadcast->End(absl::OkStatus(), CompletedEvent());
  fast.Drain(**f);
  EXPECT_EQ(fast.written.size(), 2u + 20u + 1u);  // W, I, K1..K20, C
  EXPECT_EQ((*f)->skipped_chunks(), 0);
  EXPECT_EQ(fast.final_status.code(), absl::StatusCode::kOk);
  // The stuck one holds its Watching in flight and at most its buffer.
  EXPECT_LE((*s)->pending_events(), 2 + 2 + 1);  // W, I, two fragments, C
  EXPECT_EQ((*s)->skipped_chunks(), 18);
  stuck.Drain(**s);
  EXPECT_EQ(stuck.written, (std::vector<std::string>{"W", "I", "K1", "K2", "C"}));
  EXPECT_EQ(stuck.finishes, 1);
  (*s)->Detach();
  (*f)->Detach();
}

TEST(BroadcastViewerTest, AbortEndsOnlyThatViewer) {
  auto registry = BroadcastRegistry::Create({});
  auto broadcast = registry->NewBroadcast("t");
  broadcast->Open(kId, AcceptedOf(kId));
  RecordingWriter a, b;
  auto va = registry->Join(kId, "t", "", &a);
  auto vb = registry->Join(kId, "t", "", &b);
  ASSERT_TRUE(va.ok() && vb.ok());
  (*va)->Start();
  (*vb)->Start();
  broadcast->Publish(Init());
  (*va)->Abort(absl::CancelledError("cancelled by the client"));
  a.Drain(**va);
  EXPECT_EQ(a.finishes, 1);
  EXPECT_EQ(a.final_status.code(), absl::StatusCode::kCancelled);
  (*va)->Detach();
  EXPECT_EQ(broadcast->viewers(), 1);
  broadcast->Publish(Fragment(1, true));
  broadcast->End(absl::OkStatus());
  b.Drain(**vb);
  EXPECT_EQ(b.written, (std::vector<std::string>{"W", "I", "K1"}));
  EXPECT_EQ(b.final_status.code(), absl::StatusCode::kOk);
  (*vb)->Detach();
}

TEST(BroadcastViewerTest, ABrokenStreamFinishesCancelled) {
  auto registry = BroadcastRegistry::Create({});
  auto broadcast = registry->NewBroadcast("t");
  broadcast->Open(kId, AcceptedOf(kId));
  RecordingWriter w;
  auto v = registry->Join(kId, "t", "", &w);
  ASSERT_TRUE(v.ok());
  (*v)->Start();
  broadcast->Publish(Init());
  ASSERT_TRUE(w.Complete(**v, /*ok=*/false));
  EXPECT_EQ(w.finishes, 1);
  EXPECT_EQ(w.final_status.code(), absl::StatusCode::kCancelled);
  (*v)->Detach();
}

// The outbox publishes what the engine gives its owner, and the end, to its broadcast.
engine::VideoChunk EngineChunk(int64_t sequence) {
  engine::VideoChunk c;
  c.sequence = sequence;
  c.block_index = sequence - 1;
  c.keyframe = sequence > 0;
  c.num_frames = sequence > 0 ? 40 : 0;
  c.bytes = std::string(8, static_cast<char>('a' + sequence));
  return c;
}

engine::SessionInfo EngineInfo() {
  engine::SessionInfo info;
  info.id = kId;
  info.num_frames = 81;
  info.num_blocks = 2;
  return info;
}

TEST(OutboxBroadcastTest, ViewersGetTheOwnersChunksAndEnd) {
  auto registry = BroadcastRegistry::Create({});
  RecordingWriter owner;
  SessionOutbox outbox({.tenant = "t", .broadcasts = registry}, &owner);
  outbox.OnChunk(EngineChunk(0));  // before Open: kept for viewers too
  outbox.Open(EngineInfo());
  outbox.OnChunk(EngineChunk(1));
  RecordingWriter viewer_writer;
  auto viewer = registry->Join(kId, "t", "v", &viewer_writer);
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  (*viewer)->Start();
  outbox.OnChunk(EngineChunk(2));
  outbox.OnCompleted({.frames = 81, .blocks = 2});
  owner.Drain(outbox);
  viewer_writer.Drain(**viewer);
  EXPECT_EQ(owner.written, (std::vector<std::string>{"A", "I", "K1", "K2", "C"}));
  EXPECT_EQ(viewer_writer.written, (std::vector<std::string>{"W", "I", "K1", "K2", "C"}));
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(viewer_writer.events[i].chunk().data(), owner.events[i].chunk().data()) << i;
  }
  EXPECT_EQ(viewer_writer.final_status.code(), absl::StatusCode::kOk);
  EXPECT_EQ(registry->sessions(), 0);
  outbox.Detach();
  (*viewer)->Detach();
}

TEST(OutboxBroadcastTest, TheOwnersCancelEndsTheViewers) {
  auto registry = BroadcastRegistry::Create({});
  RecordingWriter owner;
  SessionOutbox outbox({.tenant = "t", .broadcasts = registry}, &owner);
  outbox.Open(EngineInfo());
  RecordingWriter viewer_writer;
  auto viewer = registry->Join(kId, "t", "v", &viewer_writer);
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  (*viewer)->Start();
  outbox.Abort(absl::CancelledError("cancelled by the client"));
  viewer_writer.Drain(**viewer);
  EXPECT_EQ(viewer_writer.finishes, 1);
  EXPECT_EQ(viewer_writer.final_status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(registry->sessions(), 0);
  owner.Drain(outbox);
  outbox.Detach();
  (*viewer)->Detach();
}

}  // namespace
}  // namespace longsana::server
