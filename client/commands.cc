// The only translation unit of the CLI that includes gRPC.
#include "client/commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "client/progress.h"
#include "client/rpc.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "longsana/v1/longsana.grpc.pb.h"

namespace longsana::client {
namespace {

namespace v1 = ::longsana::v1;

int RpcFailure(const grpc::Status& status, const std::string& server) {
  fmt::print(stderr, "longsana: {}: {}\n", CodeName(status.error_code()), status.error_message());
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    fmt::print(stderr, "longsana: (server {})\n", server);
  }
  return kExitRpcBase + static_cast<int>(status.error_code());
}

// The MP4 being written: created at the first chunk (a refused request leaves no file),
// each chunk appended and flushed to disk so a player can follow the file as it grows.
class VideoFile {
 public:
  explicit VideoFile(std::string path) : path_(std::move(path)) {}
  ~VideoFile() {
    if (fd_ > 1) ::close(fd_);
  }
  bool Append(const std::string& data) {
    if (fd_ < 0) {
      fd_ =
          path_ == "-" ? STDOUT_FILENO : ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd_ < 0) return Fail("cannot create");
    }
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Fail("cannot write");
      done += static_cast<size_t>(n);
    }
    if (fd_ != STDOUT_FILENO && ::fsync(fd_) != 0) return Fail("cannot sync");
    bytes_ += data.size();
    return true;
  }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }

 private:
  bool Fail(const char* what) {
    error_ = fmt::format("{} {}: {}", what, path_, std::strerror(errno));
    return false;
  }
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  std::string error_;
};

// Handles one event of a Generate/Session/Watch stream; false on an output error.
bool HandleEvent(const v1::GenerateEvent& e, ProgressDisplay& progress, VideoFile& file) {
  switch (e.event_case()) {
    case v1::GenerateEvent::kAccepted: {
      const auto& a = e.accepted();
      progress.Accepted(a.session_id(), static_cast<int>(a.width()), static_cast<int>(a.height()),
                        static_cast<int>(a.num_frames()), static_cast<int>(a.num_blocks()),
                        a.seed(), static_cast<int>(a.queue_position()));
      return true;
    }
    case v1::GenerateEvent::kWatching: {  // shown as the session's Accepted
      const auto& a = e.watching().session();
      progress.Accepted(a.session_id(), static_cast<int>(a.width()), static_cast<int>(a.height()),
                        static_cast<int>(a.num_frames()), static_cast<int>(a.num_blocks()),
                        a.seed(), 0);
      return true;
    }
    case v1::GenerateEvent::kQueued:
      progress.Queued(static_cast<int>(e.queued().position()));
      return true;
    case v1::GenerateEvent::kProgress:
      progress.Step(static_cast<int>(e.progress().block()), static_cast<int>(e.progress().step()),
                    static_cast<int>(e.progress().num_steps()));
      return true;
    case v1::GenerateEvent::kChunk: {
      const auto& c = e.chunk();
      if (!file.Append(c.data())) return false;
      progress.Chunk(static_cast<int64_t>(c.sequence()), c.block_index(),
                     static_cast<int>(c.first_frame()), static_cast<int>(c.num_frames()),
                     c.data().size());
      return true;
    }
    default:
      return true;
  }
}

void PrintSummary(std::FILE* out, const ProgressDisplay& progress, const VideoFile& file,
                  const v1::Completed& done) {
  const double total = progress.elapsed();
  fmt::print(out, "wrote {} ({}): {} frames in {} blocks\n",
             file.path() == "-" ? "stdout" : file.path(), HumanBytes(file.bytes()), done.frames(),
             done.blocks());
  fmt::print(out,
             "time to first chunk {:.2f} s, total {:.2f} s, {:.1f} fps (server: {:.1f} fps, "
             "queued {:.2f} s)\n",
             progress.time_to_first_chunk(), total,
             total > 0 ? static_cast<double>(done.frames()) / total : 0.0, done.generation_fps(),
             done.queue_seconds());
  std::fflush(out);
}

// The exit code of a finished stream: the RPC's failure, a missing Completed event, or 0
// after printing the summary.
int FinishStream(const grpc::Status& status, const std::string& server,
                 const std::optional<v1::Completed>& completed, std::FILE* out,
                 const ProgressDisplay& progress, const VideoFile& file) {
  if (!status.ok()) return RpcFailure(status, server);
  if (!completed.has_value()) {
    fmt::print(stderr, "longsana: the stream ended without a Completed event\n");
    return kExitRpcBase + static_cast<int>(grpc::StatusCode::UNKNOWN);
  }
  PrintSummary(out, progress, file, *completed);
  return kExitOk;
}

// Reads a Generate or Watch stream to its end (the caller then calls Finish), writing its
// chunks to `file`. False after an output error, printed, the call cancelled and finished.
bool ReadToFile(grpc::ClientReader<v1::GenerateEvent>& reader, grpc::ClientContext& context,
                ProgressDisplay& progress, VideoFile& file,
                std::optional<v1::Completed>* completed) {
  v1::GenerateEvent event;
  while (reader.Read(&event)) {
    if (event.has_accepted() || event.has_watching()) progress.SetPeer(context.peer());
    if (!HandleEvent(event, progress, file)) {
      context.TryCancel();
      reader.Finish();
      progress.Break();
      fmt::print(stderr, "longsana: {}\n", file.error());
      return false;
    }
    if (event.has_completed()) *completed = event.completed();
  }
  return true;
}

std::FILE* ProgressStream(const std::string& output) { return output == "-" ? stderr : stdout; }

}  // namespace

int Generate(const ConnectionOptions& connection, const std::string& prompt,
             const RequestOptions& request, const std::string& output) {
  auto stub = Connect(connection);
  grpc::ClientContext context;
  PrepareContext(context, connection);
  std::FILE* out = ProgressStream(output);
  ProgressDisplay progress(out, ::isatty(::fileno(out)) != 0);
  VideoFile file(output);
  auto reader = stub->Generate(&context, BuildRequest(prompt, request));
  std::optional<v1::Completed> completed;
  if (!ReadToFile(*reader, context, progress, file, &completed)) return kExitIo;
  const grpc::Status status = reader->Finish();
  progress.Break();
  return FinishStream(status, connection.server, completed, out, progress, file);
}

int Watch(const ConnectionOptions& connection, const std::string& session_id,
          const std::string& output) {
  auto stub = Connect(connection);
  grpc::ClientContext context;
  PrepareContext(context, connection);
  std::FILE* out = ProgressStream(output);
  ProgressDisplay progress(out, ::isatty(::fileno(out)) != 0);
  VideoFile file(output);
  v1::WatchRequest request;
  request.set_session_id(session_id);
  auto reader = stub->Watch(&context, request);
  std::optional<v1::Completed> completed;
  if (!ReadToFile(*reader, context, progress, file, &completed)) return kExitIo;
  const grpc::Status status = reader->Finish();
  progress.Break();
  if (!status.ok()) return RpcFailure(status, connection.server);
  fmt::print(out, "wrote {} ({}): {} of the session's {} frames\n",
             file.path() == "-" ? "stdout" : file.path(), HumanBytes(file.bytes()),
             progress.frames_received(), completed.has_value() ? completed->frames() : 0);
  std::fflush(out);
  return kExitOk;
}

namespace {

// State shared between the session's stdin thread and the main thread; the stream and the
// context are only touched under `mu` while `open`.
struct SessionShared {
  std::mutex mu;
  bool open = true;
  grpc::ClientContext* context = nullptr;
  grpc::ClientReaderWriter<v1::SessionCommand, v1::GenerateEvent>* stream = nullptr;
  struct Sent {
    std::string what;
  };
  std::map<uint64_t, Sent> commands;  // id -> what was asked (for the acks)
  // The player this CLI stands for (the file it writes): real time from the first chunk,
  // never past the video received, stopped by /pause. Reported with /pause and /play.
  std::optional<std::chrono::steady_clock::time_point> anchor;
  double anchor_seconds = 0;
  double received_seconds = 0;
  bool paused = false;

  double PositionLocked(std::chrono::steady_clock::time_point now) const {
    if (!anchor) return 0;
    const double played =
        paused ? anchor_seconds
               : anchor_seconds + std::chrono::duration<double>(now - *anchor).count();
    return std::min(played, received_seconds);
  }
  void Received(double end_seconds) {
    std::lock_guard lock(mu);
    const auto now = std::chrono::steady_clock::now();
    anchor_seconds = PositionLocked(now);
    anchor = now;
    received_seconds = std::max(received_seconds, end_seconds);
  }
  // Pauses or resumes the player; returns its position.
  double SetPaused(bool pause) {
    std::lock_guard lock(mu);
    const auto now = std::chrono::steady_clock::now();
    anchor_seconds = PositionLocked(now);
    if (anchor) anchor = now;
    paused = pause;
    return anchor_seconds;
  }

  bool Send(const v1::SessionCommand& c, const std::string& what) {
    std::lock_guard lock(mu);
    if (!open) return false;
    commands[c.command_id()] = {what};
    return stream->Write(c);
  }
  void WritesDone() {
    std::lock_guard lock(mu);
    if (open) stream->WritesDone();
  }
  void Cancel() {
    std::lock_guard lock(mu);
    if (open) context->TryCancel();
  }
  Sent What(uint64_t id) {
    std::lock_guard lock(mu);
    auto it = commands.find(id);
    return it == commands.end() ? Sent{"command"} : it->second;
  }
};

// Lines from stdin through read(2), not stdio: the stdin thread may still be blocked in it
// when the process exits, and must not hold a stdio lock then. Used by one thread at a time
// (the main thread for the first prompt, then the stdin thread).
bool ReadLine(std::string* line) {
  // Never destroyed: the detached stdin thread may be using it while the process exits (a
  // static std::string's destructor then raced it: "double free or corruption" at exit).
  static std::string& buffer = *new std::string;
  line->clear();
  while (true) {
    const size_t nl = buffer.find('\n');
    if (nl != std::string::npos) {
      *line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (!line->empty() && line->back() == '\r') line->pop_back();
      return true;
    }
    char chunk[4096];
    const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *line = std::move(buffer);
      buffer.clear();
      return !line->empty();
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

void StdinLoop(std::shared_ptr<SessionShared> shared) {
  uint64_t next_id = 1;
  std::string line;
  while (ReadLine(&line)) {
    if (line.empty()) continue;
    v1::SessionCommand c;
    c.set_command_id(next_id++);
    std::string what;
    if (line == "/quit") {
      shared->Cancel();
      return;
    } else if (line == "/stop") {
      c.mutable_stop();
      what = "stop";
    } else if (line.starts_with("/extend")) {
      const std::string n = line.size() > 8 ? line.substr(8) : "";
      char* end = nullptr;
      const long frames = std::strtol(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || frames <= 0) {
        fmt::print(stderr, "usage: /extend N   (N video frames, a multiple of 4)\n");
        continue;
      }
      c.mutable_extend()->set_num_frames(static_cast<uint32_t>(frames));
      what = fmt::format("extend by {} frames", frames);
    } else if (line.starts_with("/recache ")) {
      c.mutable_switch_prompt()->set_prompt(line.substr(9));
      c.mutable_switch_prompt()->set_mode(v1::SwitchPrompt::MODE_RECACHE);
      what = "prompt switch (recache)";
    } else if (line.starts_with("/blend ")) {
      const std::string rest = line.substr(7);
      char* end = nullptr;
      const long blocks = std::strtol(rest.c_str(), &end, 10);
      if (end == rest.c_str() || *end != ' ' || blocks < 0 || std::string(end + 1).empty()) {
        fmt::print(stderr, "usage: /blend N PROMPT   (switch, blended over N blocks)\n");
        continue;
      }
      c.mutable_switch_prompt()->set_prompt(std::string(end + 1));
      c.mutable_switch_prompt()->set_transition_blocks(static_cast<uint32_t>(blocks));
      what = fmt::format("prompt switch (blended over {} blocks)", blocks);
    } else if (line == "/pause" || line == "/play") {
      const bool pause = line == "/pause";
      const double at = shared->SetPaused(pause);
      c.mutable_position()->set_seconds(at);
      c.mutable_position()->set_paused(pause);
      what = fmt::format("{} at {:.2f} s", pause ? "pause" : "play", at);
    } else if (line.starts_with("/")) {
      fmt::print(stderr,
                 "commands: PROMPT | /recache PROMPT | /blend N PROMPT | /extend N | /pause | "
                 "/play | /stop | /quit\n");
      continue;
    } else {
      c.mutable_switch_prompt()->set_prompt(line);
      c.mutable_switch_prompt()->set_mode(v1::SwitchPrompt::MODE_IMMEDIATE);
      what = "prompt switch";
    }
    if (!shared->Send(c, what)) return;
  }
  shared->WritesDone();  // stdin ended: the video runs to its end
}

}  // namespace

int Session(const ConnectionOptions& connection, const std::string& prompt,
            const RequestOptions& request, const std::string& output) {
  std::string first = prompt;
  if (first.empty()) {
    fmt::print(stderr, "prompt> ");
    if (!ReadLine(&first) || first.empty()) {
      fmt::print(stderr, "longsana: no prompt given\n");
      return kExitUsage;
    }
  }
  auto stub = Connect(connection);
  grpc::ClientContext context;
  PrepareContext(context, connection);
  auto stream = stub->Session(&context);
  auto shared = std::make_shared<SessionShared>();
  shared->context = &context;
  shared->stream = stream.get();
  v1::SessionCommand start;
  *start.mutable_start() = BuildRequest(first, request);
  shared->Send(start, "start");
  // Detached: it may sit in a blocking read of stdin after the video has ended.
  std::thread(StdinLoop, shared).detach();

  std::FILE* out = ProgressStream(output);
  ProgressDisplay progress(out, ::isatty(::fileno(out)) != 0);
  VideoFile file(output);
  // The video's length as the progress display knows it: Accepted, then each extend / stop.
  int num_frames = 0;
  int num_blocks = 0;
  v1::GenerateEvent event;
  std::optional<v1::Completed> completed;
  int exit_code = kExitOk;
  while (stream->Read(&event)) {
    if (event.has_accepted()) {
      progress.SetPeer(context.peer());
      num_frames = static_cast<int>(event.accepted().num_frames());
      num_blocks = static_cast<int>(event.accepted().num_blocks());
    }
    if (event.has_command_ack()) {
      const auto& ack = event.command_ack();
      progress.Break();
      const SessionShared::Sent sent = shared->What(ack.command_id());
      if (ack.code() != 0) {
        fmt::print(out, "{} (command {}) refused: {}\n", sent.what, ack.command_id(),
                   ack.error_message());
      } else {
        fmt::print(out, "{} (command {}) takes effect at block {}{}\n", sent.what, ack.command_id(),
                   ack.effective_block(), ack.detail().empty() ? "" : " (" + ack.detail() + ")");
        // The ack carries the video's length after the command.
        if (ack.num_blocks() > 0) {
          num_frames = static_cast<int>(ack.num_frames());
          num_blocks = static_cast<int>(ack.num_blocks());
        }
        progress.SetTotals(num_frames, num_blocks);
      }
      std::fflush(out);
      continue;
    }
    if (event.has_chunk() && event.chunk().block_index() >= 0) {
      const v1::VideoChunk& chunk = event.chunk();
      shared->Received(chunk.presentation_seconds() + chunk.duration_seconds());
      if (chunk.has_switch_visible()) {
        const v1::SwitchVisible& v = chunk.switch_visible();
        progress.Break();
        fmt::print(out,
                   "{} (command {}) visible at block {} ({:.2f} s of video): {:.2f} s after "
                   "it was sent, {:.2f} s of video after where the player was\n",
                   shared->What(v.command_id()).what, v.command_id(), chunk.block_index(),
                   chunk.presentation_seconds(), v.latency_seconds(), v.playback_delay_seconds());
        std::fflush(out);
      }
    }
    if (!HandleEvent(event, progress, file)) {
      fmt::print(stderr, "longsana: {}\n", file.error());
      shared->Cancel();
      exit_code = kExitIo;
      break;
    }
    if (event.has_completed()) completed = event.completed();
  }
  {
    std::lock_guard lock(shared->mu);
    shared->open = false;
  }
  const grpc::Status status = stream->Finish();
  progress.Break();
  if (exit_code != kExitOk) return exit_code;
  return FinishStream(status, connection.server, completed, out, progress, file);
}

int Info(const ConnectionOptions& connection, bool json) {
  auto stub = Connect(connection);
  grpc::ClientContext context;
  PrepareContext(context, connection);
  if (connection.timeout_seconds <= 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  v1::ServerInfo info;
  const grpc::Status status = stub->GetServerInfo(&context, {}, &info);
  if (!status.ok()) return RpcFailure(status, connection.server);
  if (json) {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(info, &text, options);
    fmt::print("{}", text);
    return kExitOk;
  }
  const auto& m = info.model();
  const auto& l = info.limits();
  const auto& c = info.capacity();
  fmt::print("server    {}  longsana-serve {}\n", connection.server, info.version());
  fmt::print("build     {}\n", info.build());
  fmt::print("model     {} ({})\n", m.pipeline_class(), m.model_name());
  fmt::print("          transformer {} ({} params), text encoder {} ({}), vae {} ({})\n",
             m.transformer_class(), HumanCount(m.transformer_params()), m.text_encoder_class(),
             HumanCount(m.text_encoder_params()), m.vae_class(), HumanCount(m.vae_params()));
  fmt::print("device    {} (transformer {}, text encoder {}, VAE {}; TF32 {})\n", m.device(),
             m.transformer_dtype(), m.text_encoder_dtype(), m.vae_dtype(), m.tf32() ? "on" : "off");
  fmt::print("warm-up   one first block at {}x{} in {:.2f} s\n", m.warmup_width(),
             m.warmup_height(), m.warmup_seconds());
  fmt::print(
      "limits    default {}x{}; width/height {}..{} in steps of {}; up to {} frames "
      "({:.1f} s at {} fps); {} frames per block; prompts up to {}\n",
      l.default_width(), l.default_height(), l.min_dimension(), l.max_dimension(),
      l.dimension_multiple(), l.max_num_frames(),
      l.fps() > 0 ? (l.max_num_frames() - 1.0) / l.fps() : 0.0, l.fps(), l.block_frames(),
      HumanBytes(l.max_prompt_bytes()));
  fmt::print("capacity  {} running, {} queued, {} admissible of {} sessions; slots {} of {}{}\n",
             c.running(), c.queued(), c.admissible(), c.max_sessions(),
             HumanBytes(c.slot_bytes_in_use()),
             c.memory_budget_bytes() > 0 ? HumanBytes(c.memory_budget_bytes()) : "unlimited",
             c.draining() ? "; DRAINING" : "");
  fmt::print("totals    {} completed, {} failed, {} cancelled, {} rejected\n", c.completed(),
             c.failed(), c.cancelled(), c.rejected());
  return kExitOk;
}

int Health(const ConnectionOptions& connection, const std::string& service) {
  namespace health = ::grpc::health::v1;
  const double seconds =
      connection.timeout_seconds > 0 ? connection.timeout_seconds : kDefaultHealthTimeoutSeconds;
  auto channel = MakeChannel(connection);
  if (!channel->WaitForConnected(After(seconds))) {
    fmt::print(stderr, "longsana: health: no connection to {} within {:.1f} s{}\n",
               connection.server, seconds,
               connection.tls ? " (a TLS handshake failure also looks like this)" : "");
    return kExitHealthConnection;
  }
  grpc::ClientContext context;
  PrepareContext(context, connection);
  context.set_deadline(After(seconds));
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  const grpc::Status status = health::Health::NewStub(channel)->Check(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    fmt::print("status: SERVICE_UNKNOWN\n");
    return kExitHealthNotServing;
  }
  if (!status.ok()) {
    fmt::print(stderr, "longsana: health: {}: {}\n", CodeName(status.error_code()),
               status.error_message());
    return kExitHealthRpc;
  }
  fmt::print("status: {}\n", health::HealthCheckResponse::ServingStatus_Name(response.status()));
  return response.status() == health::HealthCheckResponse::SERVING ? kExitHealthServing
                                                                   : kExitHealthNotServing;
}

}  // namespace longsana::client
