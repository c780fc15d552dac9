#include "client/rpc.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace longsana::client {

namespace v1 = ::longsana::v1;

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

namespace {

absl::Status BadServer(std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("--server: {}", what));
}

// "host:port" or "[v6]:port" -> (host, port); false without a port.
bool SplitHostPort(std::string_view entry, std::string* host, std::string* port) {
  const size_t colon = entry.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == entry.size()) return false;
  std::string_view h = entry.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return false;
  *host = std::string(h);
  *port = std::string(entry.substr(colon + 1));
  return std::all_of(port->begin(), port->end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// The addresses of `host`, IPv4 ones if it has any, else IPv6 ones ("[a]" form).
absl::StatusOr<std::pair<int, std::vector<std::string>>> Addresses(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    return BadServer(fmt::format("'{}' does not resolve: {}", host, ::gai_strerror(rc)));
  }
  std::vector<std::string> v4, v6;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, text,
                  sizeof text);
      if (std::find(v4.begin(), v4.end(), text) == v4.end()) v4.push_back(text);
    } else if (a->ai_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr, text,
                  sizeof text);
      const std::string bracketed = fmt::format("[{}]", text);
      if (std::find(v6.begin(), v6.end(), bracketed) == v6.end()) v6.push_back(bracketed);
    }
  }
  ::freeaddrinfo(found);
  if (!v4.empty()) return std::pair{AF_INET, std::move(v4)};
  if (!v6.empty()) return std::pair{AF_INET6, std::move(v6)};
  return BadServer(fmt::format("'{}' has no IPv4 or IPv6 address", host));
}

}  // namespace

absl::Status ResolveServer(ConnectionOptions* c) {
  c->target = c->server;
  c->authority.clear();
  if (c->server.find(',') == std::string::npos) {
    if (c->server.empty()) return BadServer("empty; give HOST:PORT");
    return absl::OkStatus();
  }
  if (c->server.find("://") != std::string::npos || c->server.starts_with("ipv4:") ||
      c->server.starts_with("ipv6:")) {
    return absl::OkStatus();  // a URI with its own list: gRPC parses it
  }
  std::vector<std::string> addresses;
  int family = 0;
  for (absl::string_view piece : absl::StrSplit(c->server, ',', absl::SkipWhitespace())) {
    const std::string entry(absl::StripAsciiWhitespace(piece));
    std::string host, port;
    if (!SplitHostPort(entry, &host, &port)) {
      return BadServer(fmt::format("'{}' in the list is not HOST:PORT", entry));
    }
    auto found = Addresses(host);
    if (!found.ok()) return found.status();
    if (family != 0 && found->first != family) {
      return BadServer(fmt::format(
          "the list mixes IPv4 and IPv6 hosts ('{}'); give one family, or a dns:/// name", entry));
    }
    family = found->first;
    for (const std::string& a : found->second) addresses.push_back(fmt::format("{}:{}", a, port));
    if (c->authority.empty()) c->authority = entry;
  }
  if (addresses.empty()) return BadServer("the list names no server");
  c->target =
      fmt::format("{}:{}", family == AF_INET ? "ipv4" : "ipv6", absl::StrJoin(addresses, ","));
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> MakeChannel(const ConnectionOptions& c) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(c.max_receive_bytes));
  args.SetServiceConfigJSON(std::string(ServiceConfigJson()));
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  if (!c.authority.empty()) args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, c.authority);
  const std::string& target = c.target.empty() ? c.server : c.target;
  if (!c.tls) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = c.ca_pem;
  ssl.pem_cert_chain = c.cert_pem;
  ssl.pem_private_key = c.key_pem;
  if (!c.server_name.empty()) args.SetSslTargetNameOverride(c.server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

std::unique_ptr<v1::LongSana::Stub> Connect(const ConnectionOptions& c) {
  return v1::LongSana::NewStub(MakeChannel(c));
}

std::chrono::system_clock::time_point After(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The deadline and the token of every call. The token goes as plain metadata, not as gRPC
// call credentials: those are refused on plaintext channels, and the local demo is one.
void PrepareContext(grpc::ClientContext& context, const ConnectionOptions& c) {
  if (c.timeout_seconds > 0) context.set_deadline(After(c.timeout_seconds));
  if (!c.token.empty()) context.AddMetadata("authorization", "Bearer " + c.token);
}

v1::GenerateRequest BuildRequest(const std::string& prompt, const RequestOptions& o) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.set_width(static_cast<uint32_t>(o.width));
  r.set_height(static_cast<uint32_t>(o.height));
  if (o.live) {
    r.set_live(true);
  } else if (o.frames > 0) {
    r.set_num_frames(static_cast<uint32_t>(o.frames));
  } else if (o.duration_seconds > 0) {
    r.set_duration_seconds(o.duration_seconds);
  }
  r.set_seed(o.seed);
  for (double t : o.timesteps) r.add_timesteps(t);
  if (o.num_cached_blocks.has_value()) r.set_num_cached_blocks(*o.num_cached_blocks);
  if (o.motion_score.has_value()) r.set_motion_score(*o.motion_score);
  if (o.crf.has_value()) r.mutable_output()->set_crf(static_cast<uint32_t>(*o.crf));
  r.mutable_output()->set_bitrate_bps(static_cast<uint64_t>(o.bitrate_bps));
  r.mutable_output()->set_preset(o.preset);
  if (o.latent_fragments) {
    r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_LATENT_FRAME);
  }
  r.set_priority(o.priority);
  if (o.pacing == "realtime") {
    r.set_pacing(v1::GenerateRequest::PACING_REALTIME);
  } else if (o.pacing == "fast") {
    r.set_pacing(v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);
  }
  r.set_lookahead_seconds(o.lookahead_seconds);
  return r;
}

}  // namespace longsana::client
