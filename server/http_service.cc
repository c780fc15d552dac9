// The HTTP port's routes of the browser API (serving.md §6): GET /v1/generate, GET
// /v1/sessions/{id}/watch and the WebSocket /v1/session, admitted exactly like their gRPC
// counterparts (server/admission.h).
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "server/admission.h"
#include "server/http_query.h"
#include "server/request_id.h"
#include "server/service.h"
#include "server/token_bucket.h"

namespace longsana::server {
namespace {

// HTTP: GET /v1/generate (the same admission as Generate) and GET /v1/sessions/{id}/watch
// (as Watch), the video as the response body.

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

// How long a refused browser client should wait before retrying (0: no hint).
int RetryAfterSeconds(const absl::Status& status) {
  if (absl::IsResourceExhausted(status)) return 2;
  if (absl::IsUnavailable(status)) return 1;
  return 0;
}

http::Response HttpError(const absl::Status& status) {
  http::Response r =
      http::Response::Error(HttpStatusOf(status.code()), absl::StatusCodeToString(status.code()),
                            std::string(status.message()));
  if (const int after = RetryAfterSeconds(status); after > 0) {
    r.headers.emplace_back("Retry-After", std::to_string(after));
  }
  return r;
}

// "127.0.0.1:5555" / "[::1]:5555" as gRPC writes peers, so that --max_sessions_per_peer
// counts a client's HTTP and gRPC sessions together.
std::string GrpcStylePeer(const std::string& peer) {
  return (peer.starts_with('[') ? "ipv6:" : "ipv4:") + peer;
}

// An HTTP response carrying a session's video: the EventWriter of an outbox (GET
// /v1/generate) or a broadcast viewer (GET /v1/sessions/{id}/watch). Video chunks become the
// body (the init segment and the fragments: one fragmented MP4); other events have no place
// in it. A failure before the first byte is a JSON error with the HTTP status of its gRPC
// code; after it, the connection is closed (a truncated body). The source holds a plain
// pointer to this writer, so it keeps itself alive from Attach until it finished or the
// client went away. Writes are serialised by the source (begun_ needs no lock).
class HttpVideoWriter : public EventWriter, public std::enable_shared_from_this<HttpVideoWriter> {
 public:
  HttpVideoWriter(LongSanaService* service, std::shared_ptr<http::ResponseStream> stream,
                  CallIdentity who)
      : who_(std::move(who)), service_(service), stream_(std::move(stream)) {
    service_->StreamOpened();
  }
  ~HttpVideoWriter() override { service_->StreamClosed(); }

  void StartEventWrite(const v1::GenerateEvent* event) override {
    if (!event->has_chunk()) {
      WriteDone(true);  // nothing to send: the next event, at once
      return;
    }
    if (!begun_) {
      begun_ = true;
      stream_->Begin(200, "video/mp4",
                     {{"Cache-Control", "no-store"},
                      {"X-Request-Id", who_.request_id},
                      {"X-Session-Id", std::to_string(id())},
                      {"X-Content-Type-Options", "nosniff"}});
    }
    auto self = shared_from_this();
    stream_->Write(event->chunk().data(), [self](bool ok) { self->WriteDone(ok); });
  }

  void FinishStream(const absl::Status& status) override {
    if (!begun_) {
      stream_->Fail(HttpError(status));
    } else if (status.ok()) {
      stream_->End();
    } else {
      stream_->Abort();
    }
    finished_ = true;
    DetachSource();  // the source writes no more; the response finishes on its own
    Release();
  }

 protected:
  // Called by the subclass once its source exists, before the source writes.
  void Attach() {
    {
      std::lock_guard lock(mu_);
      self_ = shared_from_this();
    }
    std::weak_ptr<HttpVideoWriter> weak = weak_from_this();
    stream_->SetOnClose([weak] {
      if (auto self = weak.lock()) self->ClientGone();
    });
  }
  // A write finished (not ok: the client is gone): hand it to the source.
  virtual void WriteDone(bool ok) = 0;
  // The client went away before the end: stop the source, then Detach it.
  virtual void StopSource() = 0;
  virtual void DetachSource() = 0;
  virtual engine::SessionId id() const = 0;

  std::mutex mu_;  // guards the subclass's source pointers and self_
  const CallIdentity who_;

 private:
  void ClientGone() {
    if (finished_) return;
    StopSource();
    DetachSource();
    Release();
  }
  void Release() {
    std::shared_ptr<HttpVideoWriter> keep;  // destroyed after the lock is released
    std::lock_guard lock(mu_);
    keep = std::move(self_);
    OnRelease();
  }
  virtual void OnRelease() {}  // under mu_

  LongSanaService* const service_;
  const std::shared_ptr<http::ResponseStream> stream_;
  std::shared_ptr<HttpVideoWriter> self_;
  bool begun_ = false;
  std::atomic<bool> finished_{false};
};

// GET /v1/generate: the writer of the session's outbox; a client that goes away (or a write
// that fails) cancels the session.
class HttpGenerateWriter final : public HttpVideoWriter {
 public:
  using HttpVideoWriter::HttpVideoWriter;

  void Attach(std::shared_ptr<engine::Engine> engine, std::shared_ptr<SessionOutbox> outbox,
              engine::SessionId id, PeerSessionLimiter::Lease lease) {
    {
      std::lock_guard lock(mu_);
      engine_ = std::move(engine);
      outbox_ = std::move(outbox);
      id_ = id;
      lease_ = std::move(lease);
    }
    HttpVideoWriter::Attach();
  }

 private:
  std::shared_ptr<SessionOutbox> Outbox() {
    std::lock_guard lock(mu_);
    return outbox_;
  }
  engine::SessionId id() const override { return id_; }
  void WriteDone(bool ok) override {
    if (!ok) Cancel(absl::CancelledError("the client is gone"));
    Outbox()->OnWriteDone(ok);
  }
  void StopSource() override {
    const absl::Status reason = absl::CancelledError("the client is gone");
    Cancel(reason);
    Outbox()->Abort(reason);
  }
  void DetachSource() override { Outbox()->Detach(); }
  void OnRelease() override { lease_ = {}; }  // the peer's slot goes back with the stream
  void Cancel(const absl::Status& reason) {
    std::shared_ptr<engine::Engine> engine;
    {
      std::lock_guard lock(mu_);
      engine = engine_;
    }
    if (engine == nullptr || cancel_sent_.exchange(true) || Outbox()->Ended()) return;
    spdlog::info("{} cancelling: {}", who_.LogTag(id_), reason.ToString());
    engine->Cancel(id_, reason);
  }

  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<SessionOutbox> outbox_;
  engine::SessionId id_ = 0;  // set in Attach, before the outbox writes
  PeerSessionLimiter::Lease lease_;
  std::atomic<bool> cancel_sent_{false};
};

// GET /v1/sessions/{id}/watch: the writer of a broadcast viewer (the session's init segment,
// then fragments from its latest keyframe on); the response ends with the session.
class HttpWatchWriter final : public HttpVideoWriter {
 public:
  HttpWatchWriter(LongSanaService* service, std::shared_ptr<http::ResponseStream> stream,
                  CallIdentity who, engine::SessionId id)
      : HttpVideoWriter(service, std::move(stream), std::move(who)), id_(id) {}

  void Attach(std::shared_ptr<BroadcastViewer> viewer) {
    {
      std::lock_guard lock(mu_);
      viewer_ = viewer;
    }
    HttpVideoWriter::Attach();
    spdlog::info("{} watch opened: HTTP watch", who_.LogTag(id_));
    viewer->Start();
  }

 private:
  std::shared_ptr<BroadcastViewer> Viewer() {
    std::lock_guard lock(mu_);
    return viewer_;
  }
  engine::SessionId id() const override { return id_; }
  void WriteDone(bool ok) override { Viewer()->OnWriteDone(ok); }
  void StopSource() override { Viewer()->Abort(absl::CancelledError("the viewer is gone")); }
  void DetachSource() override {
    spdlog::info("{} watch closed", who_.LogTag(id_));
    Viewer()->Detach();
  }

  const engine::SessionId id_;
  std::shared_ptr<BroadcastViewer> viewer_;
};

// The Authorization header, or a Bearer token from ?access_token= (what a browser's <video
// src> or WebSocket can send; the query never reaches a log).
std::optional<std::string> AuthorizationOf(const http::Request& request) {
  if (auto header = request.Header("authorization")) return header;
  if (auto token = request.QueryParam("access_token")) return "Bearer " + *token;
  return std::nullopt;
}

// Logs and counts an HTTP refusal and answers it (JSON error, the request id echoed).
// Logs and counts a refusal of a browser route (the caller answers it).
void RecordHttpRejection(LongSanaService& service, std::string_view route, const CallIdentity& who,
                         std::string_view peer, const absl::Status& status, RejectReason reason) {
  spdlog::info("{} HTTP {} from {} rejected ({}): {}", who.LogTag(), route, peer,
               RejectReasonName(reason), status.ToString());
  if (service.metrics() != nullptr) service.metrics()->Rejected(reason, who.tenant->name);
}

void RejectHttp(LongSanaService& service, std::string_view route, const CallIdentity& who,
                std::string_view peer, const absl::Status& status, RejectReason reason,
                http::ResponseStream& stream) {
  RecordHttpRejection(service, route, who, peer, status, reason);
  http::Response response = HttpError(status);
  response.headers.emplace_back("X-Request-Id", who.request_id);
  stream.Fail(std::move(response));
}

// ---------------------------------------------------------------------------------------
// WebSocket /v1/session: the Session RPC over a WebSocket. Text messages in, each one
// SessionCommand in the protobuf JSON mapping; out, each event as one text message (the same
// mapping, zero fields included), a `chunk` event's bytes as the binary message right after
// it, and at the end {"end":{"code":N,"status":"NAME","message":"..."}} before the close
// (1000 for OK, else 4000 + the gRPC code).

std::string EventJson(const v1::GenerateEvent& event) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  if (auto s = google::protobuf::util::MessageToJsonString(event, &json, options); !s.ok()) {
    spdlog::error("websocket: an event did not print as JSON: {}", s.ToString());
    return "{}";
  }
  return json;
}

std::string EndJson(const absl::Status& status) {
  nlohmann::json end = {{"code", static_cast<int>(status.code())},
                        {"status", absl::StatusCodeToString(status.code())},
                        {"message", std::string(status.message())}};
  if (const int after = RetryAfterSeconds(status); after > 0) end["retryAfterSeconds"] = after;
  return nlohmann::json{{"end", end}}.dump(-1, ' ', false,
                                           nlohmann::json::error_handler_t::replace);
}

class WsSession final : public EventWriter, public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(LongSanaService* service, std::shared_ptr<http::WebSocket> socket, CallIdentity who,
            std::string peer)
      : service_(service),
        socket_(std::move(socket)),
        who_(std::move(who)),
        peer_(std::move(peer)) {
    service_->StreamOpened();
    if (service->options().command_rate > 0) {
      bucket_.emplace(service->options().command_rate, service->options().command_burst,
                      TokenBucket::Clock::now());
    }
  }
  ~WsSession() override { service_->StreamClosed(); }

  // Holds itself until the stream finished or the client went away.
  void Begin() {
    self_ = shared_from_this();
    std::weak_ptr<WsSession> weak = weak_from_this();
    socket_->Start({.on_message =
                        [weak](std::string message, bool binary) {
                          if (auto self = weak.lock()) self->OnMessage(std::move(message), binary);
                        },
                    .on_close =
                        [weak] {
                          if (auto self = weak.lock()) self->ClientGone();
                        }});
    socket_->Read();
  }

  // Refused before a session existed: the end message, then the close.
  void Refuse(const absl::Status& status, RejectReason reason) {
    RecordHttpRejection(*service_, "WebSocket /v1/session", who_, peer_, status, reason);
    End(status);
  }

  void StartEventWrite(const v1::GenerateEvent* event) override {
    auto self = shared_from_this();
    if (!event->has_chunk()) {
      socket_->Send(EventJson(*event), false, [self](bool ok) { self->WriteDone(ok); });
      return;
    }
    v1::GenerateEvent header = *event;
    header.mutable_chunk()->clear_data();
    socket_->Send(EventJson(header), false, nullptr);
    socket_->Send(event->chunk().data(), true, [self](bool ok) { self->WriteDone(ok); });
  }

  void FinishStream(const absl::Status& status) override {
    End(status);
    if (auto outbox = Outbox()) outbox->Detach();
  }

 private:
  std::shared_ptr<SessionOutbox> Outbox() {
    std::lock_guard lock(mu_);
    return outbox_;
  }

  void End(const absl::Status& status) {
    if (ended_.exchange(true)) return;
    socket_->Send(EndJson(status), false, nullptr);
    socket_->Close(
        status.ok() ? 1000 : static_cast<uint16_t>(4000 + static_cast<int>(status.code())),
        std::string(absl::StatusCodeToString(status.code())));
    Release();
  }

  void Release() {
    std::shared_ptr<WsSession> keep;  // destroyed after the lock is released
    std::lock_guard lock(mu_);
    keep = std::move(self_);
    peer_lease_ = {};
  }

  void OnMessage(std::string message, bool binary) {
    if (ended_) return;
    if (owe_token_) {
      // This read waited for its token (ReadNext): take it now.
      owe_token_ = false;
      bucket_->TryTake(TokenBucket::Clock::now());
    }
    Handle(std::move(message), binary);
  }

  void Handle(std::string message, bool binary) {
    const bool started = Outbox() != nullptr;
    v1::SessionCommand command;
    if (binary) {
      return ProtocolError(absl::InvalidArgumentError(
          "command: send commands as text messages (SessionCommand as JSON); binary messages "
          "are only sent by the server"));
    }
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    if (auto s = google::protobuf::util::JsonStringToMessage(message, &command, options); !s.ok()) {
      return ProtocolError(absl::InvalidArgumentError(
          fmt::format("command: not a SessionCommand in the protobuf JSON mapping: {}",
                      std::string(s.message()))));
    }
    if (!started) {
      if (!command.has_start()) {
        return ProtocolError(FirstCommandNotStartError());
      }
      RejectReason reason = RejectReason::kInvalid;
      auto admitted = AdmitSession(*service_, peer_, who_, command.start(), /*interactive=*/true,
                                   "WebSocket /v1/session", "start.", this, &reason);
      if (!admitted.ok()) return Refuse(admitted.status(), reason);
      {
        std::lock_guard lock(mu_);
        engine_ = admitted->engine;
        session_id_ = admitted->info.id;
        peer_lease_ = std::move(admitted->peer_lease);
        outbox_ = admitted->outbox;
      }
      admitted->outbox->Open(admitted->info);
      ReadNext();
      return;
    }
    if (command.has_start()) return ProtocolError(StartedTwiceError());
    SendSessionCommand(*service_, *engine_, session_id_, who_, *Outbox(), command);
    ReadNext();
  }

  // Reads the next command unless the client must catch up on events first (WriteDone
  // resumes).
  void ReadNext() {
    auto outbox = Outbox();
    if (outbox != nullptr && outbox->Ended()) return;
    if (outbox != nullptr && outbox->PendingEvents() >= service_->options().max_pending_events) {
      read_paused_ = true;
      return;
    }
    // Over the command rate the next read waits for its token (as the gRPC stream's read
    // does): throttled, not refused, and TCP slows the client down.
    TokenBucket::Clock::duration wait{};
    if (bucket_.has_value() && (wait = bucket_->TryTake(TokenBucket::Clock::now())) > wait.zero()) {
      owe_token_ = true;
    }
    socket_->Read(std::chrono::ceil<std::chrono::nanoseconds>(wait));
  }

  void WriteDone(bool ok) {
    auto outbox = Outbox();
    if (!ok) Cancel(absl::CancelledError("the client is gone"));
    if (outbox == nullptr) return;
    outbox->OnWriteDone(ok);
    if (read_paused_ && !outbox->Ended() &&
        outbox->PendingEvents() < service_->options().max_pending_events) {
      read_paused_ = false;
      socket_->Read();
    }
  }

  // A malformed command: before the start the stream ends at once; after it the session is
  // cancelled with the error, which its end message carries.
  void ProtocolError(const absl::Status& status) {
    auto outbox = Outbox();
    if (outbox == nullptr) return Refuse(status, RejectReason::kInvalid);
    spdlog::info("{} protocol error: {}", who_.LogTag(session_id_), status.ToString());
    Cancel(status);
    outbox->Abort(status);
  }

  void ClientGone() {
    if (ended_) return;
    const absl::Status reason = absl::CancelledError("the client closed the WebSocket");
    auto outbox = Outbox();
    if (outbox == nullptr) {
      ended_ = true;
      return Release();
    }
    Cancel(reason);
    outbox->Abort(reason);
  }

  void Cancel(const absl::Status& reason) {
    std::shared_ptr<engine::Engine> engine;
    {
      std::lock_guard lock(mu_);
      engine = engine_;
    }
    auto outbox = Outbox();
    if (engine == nullptr || outbox == nullptr || outbox->Ended()) return;
    if (cancel_sent_.exchange(true)) return;
    spdlog::info("{} cancelling: {}", who_.LogTag(session_id_), reason.ToString());
    engine->Cancel(session_id_, reason);
  }

  LongSanaService* const service_;
  const std::shared_ptr<http::WebSocket> socket_;
  const CallIdentity who_;
  const std::string peer_;
  std::optional<TokenBucket> bucket_;  // command rate limit; null: unlimited
  std::atomic<bool> ended_{false};
  std::atomic<bool> cancel_sent_{false};
  // Touched only from the socket's callbacks (one at a time).
  bool owe_token_ = false;
  bool read_paused_ = false;

  std::mutex mu_;
  std::shared_ptr<WsSession> self_;
  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<SessionOutbox> outbox_;  // set once the session is submitted
  engine::SessionId session_id_ = 0;
  PeerSessionLimiter::Lease peer_lease_;
};

}  // namespace

void LongSanaService::HttpGenerate(http::Request request,
                                   std::shared_ptr<http::ResponseStream> stream) {
  CallIdentity who;
  who.request_id = RequestIdOrNew(request.Header("x-request-id"));
  const std::string peer = GrpcStylePeer(request.peer);
  auto reject = [&](const absl::Status& status, RejectReason reason) {
    RejectHttp(*this, "/v1/generate", who, peer, status, reason, *stream);
  };
  auto tenant = Authenticate(AuthorizationOf(request));
  if (!tenant.ok()) return reject(tenant.status(), RejectReason::kUnauthenticated);
  who.tenant = *tenant;
  auto generate = GenerateRequestFromQuery(request.query);
  if (!generate.ok()) return reject(generate.status(), RejectReason::kInvalid);
  auto writer = std::make_shared<HttpGenerateWriter>(this, stream, who);
  RejectReason reason = RejectReason::kInvalid;
  auto admitted = AdmitSession(*this, peer, who, *generate, /*interactive=*/false,
                               "HTTP /v1/generate", "", writer.get(), &reason);
  if (!admitted.ok()) return reject(admitted.status(), reason);
  std::shared_ptr<SessionOutbox> outbox = admitted->outbox;
  writer->Attach(std::move(admitted->engine), outbox, admitted->info.id,
                 std::move(admitted->peer_lease));
  outbox->Open(admitted->info);
}

void LongSanaService::HttpWatch(http::Request request,
                                std::shared_ptr<http::ResponseStream> stream) {
  CallIdentity who;
  who.request_id = RequestIdOrNew(request.Header("x-request-id"));
  const std::string peer = GrpcStylePeer(request.peer);
  auto reject = [&](const absl::Status& status, RejectReason reason) {
    RejectHttp(*this, "/v1/sessions/{id}/watch", who, peer, status, reason, *stream);
  };
  auto tenant = Authenticate(AuthorizationOf(request));
  if (!tenant.ok()) return reject(tenant.status(), RejectReason::kUnauthenticated);
  who.tenant = *tenant;
  if (auto engine = AcquireEngine(); !engine.ok()) {
    return reject(engine.status(), ReasonOfUnavailable(*this));
  }
  if (!request.query.empty() && !(request.QueryParam("access_token").has_value() &&
                                  http::QueryPairs(request.query).size() == 1)) {
    return reject(
        absl::InvalidArgumentError("query: the watch route takes no parameters but access_token"),
        RejectReason::kInvalid);
  }
  auto id = ParseSessionId(request.path_params["id"]);
  if (!id.ok()) return reject(id.status(), RejectReason::kInvalid);
  auto writer = std::make_shared<HttpWatchWriter>(this, stream, who, *id);
  auto viewer = broadcasts()->Join(*id, who.tenant->name, who.request_id, writer.get());
  if (!viewer.ok()) {
    return reject(viewer.status(), absl::IsResourceExhausted(viewer.status())
                                       ? RejectReason::kWatcherLimit
                                       : RejectReason::kNotFound);
  }
  writer->Attach(std::move(*viewer));
}

void LongSanaService::WebSocketSession(http::Request request,
                                       std::shared_ptr<http::WebSocket> socket) {
  CallIdentity who;
  who.request_id = RequestIdOrNew(request.Header("x-request-id"));
  const std::string peer = GrpcStylePeer(request.peer);
  absl::Status refusal;
  RejectReason reason = RejectReason::kInvalid;
  for (const auto& [name, value] : http::QueryPairs(request.query)) {
    if (name == "access_token") continue;  // browsers cannot set headers on a WebSocket
    refusal = absl::InvalidArgumentError(fmt::format(
        "query: unknown parameter '{}' (the WebSocket takes only access_token; the request is "
        "the first message, a SessionCommand with `start`)",
        name.substr(0, 64)));
    break;
  }
  if (refusal.ok()) {
    if (auto tenant = Authenticate(AuthorizationOf(request)); tenant.ok()) {
      who.tenant = *tenant;
    } else {
      refusal = tenant.status();
      reason = RejectReason::kUnauthenticated;
    }
  }
  if (refusal.ok()) {
    if (auto engine = AcquireEngine(); !engine.ok()) {
      refusal = engine.status();
      reason = ReasonOfUnavailable(*this);
    }
  }
  auto session = std::make_shared<WsSession>(this, std::move(socket), std::move(who), peer);
  if (!refusal.ok()) return session->Refuse(refusal, reason);
  session->Begin();
}

}  // namespace longsana::server
