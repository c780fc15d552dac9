#include "tests/media/browser_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/common/str_util.h"

extern char** environ;

namespace longsana::testing {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;

absl::Status ErrnoError(std::string_view what) {
  return absl::InternalError(StrCat(what, ": ", std::strerror(errno)));
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    default:
      return "Status";
  }
}

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

HttpTestServer::HttpTestServer(Handler handler) : handler_(std::move(handler)) {}

HttpTestServer::~HttpTestServer() { Stop(); }

absl::Status HttpTestServer::Start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoError("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return ErrnoError("bind(127.0.0.1:0)");
  }
  if (::listen(listen_fd_, 64) != 0) return ErrnoError("listen");
  socklen_t length = sizeof(address);
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoError("getsockname");
  }
  port_ = ntohs(address.sin_port);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void HttpTestServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    const char byte = 1;
    (void)!::write(wake_pipe_[1], &byte, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  for (int* fd : {&listen_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void HttpTestServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    const int ready = ::poll(fds, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0 || stopping_) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.insert(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void HttpTestServer::Serve(int fd) {
  std::string data;
  char buffer[16 * 1024];
  size_t header_end = std::string::npos;
  HttpRequest request;
  HttpResponse response;
  bool complete = false;
  size_t content_length = 0;
  while (true) {
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::istringstream head(data.substr(0, header_end));
        std::string line, target, version;
        std::getline(head, line);
        std::istringstream request_line(line);
        request_line >> request.method >> target >> version;
        request.path = target.substr(0, target.find('?'));
        while (std::getline(head, line)) {
          const size_t colon = line.find(':');
          if (colon == std::string::npos) continue;
          if (ToLower(line.substr(0, colon)) == "content-length") {
            content_length = std::strtoull(line.c_str() + colon + 1, nullptr, 10);
          }
        }
        if (content_length > kMaxBodyBytes) break;
      } else if (data.size() > kMaxHeaderBytes) {
        break;
      }
    }
    if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) {
      request.body = data.substr(header_end + 4, content_length);
      complete = true;
      break;
    }
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // closed, timed out or shut down by Stop()
    data.append(buffer, static_cast<size_t>(n));
  }
  if (complete) {
    response = handler_(request);
  } else {
    response = HttpResponse{400, "text/plain", "bad request"};
  }
  if (complete || !data.empty()) {
    std::string head = StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                              "\r\nContent-Type: ", response.content_type,
                              "\r\nContent-Length: ", response.body.size(),
                              "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n");
    if (WriteAll(fd, head)) WriteAll(fd, response.body);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  open_fds_.erase(fd);
}

absl::StatusOr<std::unique_ptr<ChromiumProcess>> ChromiumProcess::Launch(
    const std::string& binary, const std::string& url, const std::string& user_data_dir,
    const std::string& log_path) {
  std::vector<std::string> args = {
      binary,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-extensions",
      "--disable-dev-shm-usage",
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
      "--autoplay-policy=no-user-gesture-required",
      "--mute-audio",
      "--password-store=basic",
      StrCat("--user-data-dir=", user_data_dir),
      url,
  };
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // Its own process group, so that Terminate() reaches the renderer and utility processes.
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int error =
      ::posix_spawn(&pid, binary.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    return absl::FailedPreconditionError(
        StrCat("posix_spawn(", binary, "): ", std::strerror(error)));
  }
  return std::unique_ptr<ChromiumProcess>(new ChromiumProcess(pid));
}

ChromiumProcess::~ChromiumProcess() { Terminate(); }

bool ChromiumProcess::Exited(std::string* description) {
  if (reaped_) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  reaped_ = true;
  if (WIFEXITED(status)) {
    *description = StrCat("exited with status ", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    *description = StrCat("killed by signal ", WTERMSIG(status));
  }
  return true;
}

void ChromiumProcess::Terminate() {
  if (terminated_) return;
  terminated_ = true;
  // The group outlives its leader while children run; signal it even after reaping.
  ::kill(-pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string ignored;
  while (!Exited(&ignored) && std::chrono::steady_clock::now() < deadline) {
    ::usleep(50 * 1000);
  }
  ::kill(-pid_, SIGKILL);
  if (!reaped_) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
  }
}

std::string FileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  return text;
}

}  // namespace longsana::testing
