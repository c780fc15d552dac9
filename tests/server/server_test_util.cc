#include "tests/server/server_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"

namespace longsana::testing {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const grpc::ChannelArguments& args) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::vector<v1::VideoChunk> StreamResult::Chunks() const {
  std::vector<v1::VideoChunk> out;
  for (const auto& e : events) {
    if (e.has_chunk()) out.push_back(e.chunk());
  }
  return out;
}

std::vector<v1::CommandAck> StreamResult::Acks() const {
  std::vector<v1::CommandAck> out;
  for (const auto& e : events) {
    if (e.has_command_ack()) out.push_back(e.command_ack());
  }
  return out;
}

std::optional<v1::Accepted> StreamResult::accepted() const {
  for (const auto& e : events) {
    if (e.has_accepted()) return e.accepted();
  }
  return std::nullopt;
}

std::optional<v1::Completed> StreamResult::completed() const {
  for (const auto& e : events) {
    if (e.has_completed()) return e.completed();
  }
  return std::nullopt;
}

std::string StreamResult::Video() const {
  std::string out;
  for (const auto& e : events) {
    if (e.has_chunk()) out += e.chunk().data();
  }
  return out;
}

StreamResult RunGenerate(v1::LongSana::Stub& stub, const v1::GenerateRequest& request,
                         std::optional<std::chrono::milliseconds> timeout) {
  grpc::ClientContext context;
  if (timeout.has_value()) context.set_deadline(std::chrono::system_clock::now() + *timeout);
  StreamResult result;
  auto reader = stub.Generate(&context, request);
  v1::GenerateEvent event;
  while (reader->Read(&event)) result.events.push_back(event);
  result.status = reader->Finish();
  return result;
}

v1::GenerateRequest SmallRequest(int frames) {
  v1::GenerateRequest r;
  r.set_prompt("a red fox running through fresh snow");
  r.set_width(64);
  r.set_height(64);
  r.set_num_frames(static_cast<uint32_t>(frames));
  r.set_seed(7);
  return r;
}

absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return static_cast<int>(response.status());
}

bool WaitForHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                   int want, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    auto s = CheckHealth(channel, service);
    if (s.ok() && *s == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

namespace {

bool Await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  if (!cq.Next(&got, &ok)) return false;
  return ok && got == tag;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListServicesByReflection(
    const std::shared_ptr<grpc::Channel>& channel) {
  // The reflection messages come from libgrpc++_reflection's generated descriptors (the
  // server links it); no generated C++ header is installed, so build them dynamically.
  namespace pb = google::protobuf;
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  const pb::Descriptor* req_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
  const pb::Descriptor* resp_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  if (req_desc == nullptr || resp_desc == nullptr) {
    return absl::NotFoundError("grpc.reflection.v1alpha descriptors are not linked in");
  }
  pb::DynamicMessageFactory factory(pool);
  std::unique_ptr<pb::Message> request(factory.GetPrototype(req_desc)->New());
  request->GetReflection()->SetString(request.get(), req_desc->FindFieldByName("list_services"),
                                      "*");
  std::string bytes;
  request->SerializeToString(&bytes);

  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  int tags[5];
  call->StartCall(&tags[0]);
  if (!Await(cq, &tags[0])) return absl::UnavailableError("reflection: StartCall failed");
  grpc::Slice slice(bytes);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, &tags[1]);
  if (!Await(cq, &tags[1])) return absl::UnavailableError("reflection: Write failed");
  call->WritesDone(&tags[2]);
  if (!Await(cq, &tags[2])) return absl::UnavailableError("reflection: WritesDone failed");
  grpc::ByteBuffer in;
  call->Read(&in, &tags[3]);
  const bool got = Await(cq, &tags[3]);
  grpc::Status status;
  call->Finish(&status, &tags[4]);
  Await(cq, &tags[4]);
  cq.Shutdown();
  void* ignored_tag;
  bool ignored_ok;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  if (!got) {
    return absl::UnavailableError(
        fmt::format("reflection: no response ({})", status.error_message()));
  }
  std::vector<grpc::Slice> slices;
  (void)in.Dump(&slices);
  std::string response_bytes;
  for (const auto& s : slices) {
    response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  std::unique_ptr<pb::Message> response(factory.GetPrototype(resp_desc)->New());
  if (!response->ParseFromString(response_bytes)) {
    return absl::DataLossError("reflection: unparsable response");
  }
  const pb::Reflection* refl = response->GetReflection();
  const pb::FieldDescriptor* list_field = resp_desc->FindFieldByName("list_services_response");
  if (!refl->HasField(*response, list_field)) {
    return absl::InternalError(
        fmt::format("reflection: unexpected response {}", response->ShortDebugString()));
  }
  const pb::Message& list = refl->GetMessage(*response, list_field);
  const pb::FieldDescriptor* service_field = list.GetDescriptor()->FindFieldByName("service");
  std::vector<std::string> names;
  for (int i = 0; i < list.GetReflection()->FieldSize(list, service_field); ++i) {
    const pb::Message& svc = list.GetReflection()->GetRepeatedMessage(list, service_field, i);
    names.push_back(
        svc.GetReflection()->GetString(svc, svc.GetDescriptor()->FindFieldByName("name")));
  }
  return names;
}

// ---------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                              const std::string& stderr_path) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  const int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err_fd < 0) return absl::InternalError(fmt::format("cannot open {}", stderr_path));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    close(err_fd);
    // The test runner may block signals; the child starts with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  close(err_fd);
  auto p = std::unique_ptr<Subprocess>(new Subprocess());
  p->pid_ = pid;
  p->stdout_fd_ = pipe_fds[0];
  return p;
}

Subprocess::~Subprocess() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& prefix,
                                                    std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    // Scan complete lines not yet looked at.
    size_t nl;
    while ((nl = stdout_.find('\n', scanned_)) != std::string::npos) {
      std::string line = stdout_.substr(scanned_, nl - scanned_);
      scanned_ = nl + 1;
      if (line.starts_with(prefix)) return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError(
          fmt::format("no line starting with '{}' on stdout", prefix));
    }
    pollfd pfd{stdout_fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) return absl::UnavailableError("the process closed stdout");
    stdout_.append(buf, static_cast<size_t>(n));
  }
}

void Subprocess::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

absl::StatusOr<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= end) {
      return absl::DeadlineExceededError("the process did not exit");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string RunCommand(const std::string& command, int* exit_code) {
  std::string out;
  FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) {
    *exit_code = -1;
    return out;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const int status = pclose(f);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

absl::StatusOr<ProbedVideo> FfprobeVideo(const std::string& path) {
  int code = 0;
  const std::string out =
      RunCommand(fmt::format("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                             "stream=codec_name,width,height,nb_read_frames -of csv=p=0 '{}' 2>&1",
                             path),
                 &code);
  if (code != 0) return absl::InternalError(fmt::format("ffprobe failed: {}", out));
  ProbedVideo v;
  std::stringstream ss(out);
  std::string codec, w, h, n;
  if (!std::getline(ss, codec, ',') || !std::getline(ss, w, ',') || !std::getline(ss, h, ',') ||
      !std::getline(ss, n)) {
    return absl::InternalError(fmt::format("unexpected ffprobe output: {}", out));
  }
  v.codec = codec;
  v.width = std::stoi(w);
  v.height = std::stoi(h);
  v.frames = std::stoll(n);
  return v;
}

std::string BinaryDir() {
  return std::filesystem::canonical("/proc/self/exe").parent_path().string();
}

RunningServer StartServerProcess(const std::string& binary, const std::vector<std::string>& flags,
                                 const std::string& log_path) {
  std::vector<std::string> argv = {BinaryDir() + "/" + binary, "--listen=127.0.0.1:0",
                                   "--http_listen=127.0.0.1:0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  bool http = true;  // a later --http_listen= (empty) turns the HTTP port off
  for (const std::string& f : flags) {
    if (f.starts_with("--http_listen=") || f.starts_with("--http-listen=")) {
      http = f.size() > std::string("--http_listen=").size();
    }
  }
  RunningServer s;
  auto p = Subprocess::Start(argv, log_path);
  if (!p.ok()) {
    fmt::print(stderr, "{} did not start: {}\n", binary, p.status().ToString());
    return s;
  }
  auto line = (*p)->WaitForLine("listening on ", std::chrono::seconds(120));
  if (!line.ok()) {
    std::ifstream log(log_path);
    std::stringstream text;
    text << log.rdbuf();
    fmt::print(stderr, "{} is not listening: {}\n{}\n", binary, line.status().ToString(),
               text.str());
    return s;
  }
  s.process = std::move(*p);
  s.address = line->substr(std::string("listening on ").size());
  if (http) {
    auto http_line = s.process->WaitForLine("http listening on ", std::chrono::seconds(30));
    if (!http_line.ok()) {
      fmt::print(stderr, "{} printed no HTTP address: {}\n", binary, http_line.status().ToString());
      s.process.reset();
      return s;
    }
    s.http_address = http_line->substr(std::string("http listening on ").size());
  }
  return s;
}

double ScrapeSample(const std::string& scrape, const std::string& series) {
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nan("");
}

std::vector<std::string> FakeFlags(std::vector<std::string> extra) {
  std::vector<std::string> f = {"--model-dir=fake", "--fake-step-ms=20"};
  f.insert(f.end(), extra.begin(), extra.end());
  return f;
}

}  // namespace longsana::testing

namespace longsana::testing {

std::optional<std::string> HttpReply::Header(std::string_view lower_name) const {
  size_t pos = 0;
  while (pos < headers.size()) {
    const size_t end = headers.find("\r\n", pos);
    const std::string line = headers.substr(pos, end == std::string::npos ? end : end - pos);
    pos = end == std::string::npos ? headers.size() : end + 2;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name != lower_name) continue;
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    return line.substr(v);
  }
  return std::nullopt;
}

absl::StatusOr<HttpReply> HttpGet(const std::string& host_port, const std::string& path,
                                  std::chrono::milliseconds timeout,
                                  const std::string& extra_headers) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("host:port expected");
  std::string host = host_port.substr(0, colon);
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  const int port = std::stoi(host_port.substr(colon + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(fmt::format("connect {}: {}", host_port, std::strerror(errno)));
  }
  const std::string request = fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}\r\n", path, host_port, extra_headers);
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string raw;
  char buf[8192];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return absl::DeadlineExceededError("recv timed out");
    }
    break;
  }
  close(fd);
  const size_t split = raw.find("\r\n\r\n");
  if (split == std::string::npos || !raw.starts_with("HTTP/1.")) {
    return absl::DataLossError(fmt::format("not an HTTP response: {}", raw.substr(0, 200)));
  }
  HttpReply reply;
  reply.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  const size_t first_line_end = raw.find("\r\n");
  reply.headers = raw.substr(first_line_end + 2, split - first_line_end - 2);
  reply.body = raw.substr(split + 4);
  const auto encoding = reply.Header("transfer-encoding");
  if (encoding.has_value() && encoding->find("chunked") != std::string::npos) {
    reply.chunked = true;
    std::string decoded;
    size_t at = 0;
    while (true) {
      const size_t line_end = reply.body.find("\r\n", at);
      if (line_end == std::string::npos) return absl::DataLossError("chunked body cut short");
      const size_t size = std::stoul(reply.body.substr(at, line_end - at), nullptr, 16);
      if (size == 0) break;
      if (line_end + 2 + size + 2 > reply.body.size()) {
        return absl::DataLossError("chunk cut short");
      }
      decoded.append(reply.body, line_end + 2, size);
      at = line_end + 2 + size + 2;
    }
    reply.body = std::move(decoded);
  }
  return reply;
}

}  // namespace longsana::testing
