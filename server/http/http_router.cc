#include "server/http/http_router.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>

namespace longsana::server::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// Lenient: an invalid escape stays as written (browsers send what users type).
std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

namespace {

std::string DecodeQueryComponent(std::string_view s) { return PercentDecode(s, true); }

void AppendJsonEscaped(std::string_view s, std::string& out) {
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  path.remove_prefix(1);  // the leading '/'
  while (true) {
    const size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

[[noreturn]] void BadRoute(std::string_view method, std::string_view pattern,
                           std::string_view why) {
  // A programming error at setup, like a failed CHECK: stderr, whatever the log sink.
  fmt::print(stderr, "http router: route {} {}: {}\n", method, pattern, why);
  std::abort();
}

}  // namespace

std::optional<std::string> Request::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    pairs.emplace_back(
        DecodeQueryComponent(pair.substr(0, eq)),
        eq == std::string_view::npos ? std::string() : DecodeQueryComponent(pair.substr(eq + 1)));
  }
  return pairs;
}

std::optional<std::string> Request::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (DecodeQueryComponent(pair.substr(0, eq)) != name) continue;
    return eq == std::string_view::npos ? std::string() : DecodeQueryComponent(pair.substr(eq + 1));
  }
  return std::nullopt;
}

absl::Status ParseTarget(std::string_view target, Request& request) {
  std::string_view rest = target;
  bool absolute_form = false;
  for (const std::string_view scheme : {"http://", "https://"}) {
    const auto lower_equal = [](char a, char b) {
      return a == std::tolower(static_cast<unsigned char>(b));
    };
    if (rest.size() >= scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), rest.begin(), lower_equal)) {
      rest.remove_prefix(std::min(rest.size(), rest.find_first_of("/?", scheme.size())));
      absolute_form = true;
      break;
    }
  }
  if (!absolute_form && !rest.starts_with('/')) {
    return absl::InvalidArgumentError("the request-target is neither an absolute path nor a URL");
  }
  const size_t question = rest.find('?');
  const std::string_view raw_path = rest.substr(0, question);
  std::string path;
  path.reserve(raw_path.size() + 1);
  if (!raw_path.starts_with('/')) path.push_back('/');  // "http://host" and "http://host?q"
  for (size_t i = 0; i < raw_path.size(); ++i) {
    if (raw_path[i] != '%') {
      path.push_back(raw_path[i]);
      continue;
    }
    const int hi = i + 2 < raw_path.size() ? HexValue(raw_path[i + 1]) : -1;
    const int lo = i + 2 < raw_path.size() ? HexValue(raw_path[i + 2]) : -1;
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad percent escape in the path");
    const char c = static_cast<char>(hi * 16 + lo);
    if (c == '/' || c == '\0') return absl::InvalidArgumentError("the path encodes '/' or NUL");
    path.push_back(c);
    i += 2;
  }
  request.target = std::string(target);
  request.path = std::move(path);
  request.query = question == std::string_view::npos ? "" : std::string(rest.substr(question + 1));
  return absl::OkStatus();
}

Response Response::Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

Response Response::Error(int http_status, std::string_view status_name, std::string_view message) {
  std::string body = fmt::format(R"({{"error":{{"code":{},"status":")", http_status);
  AppendJsonEscaped(status_name, body);
  body += R"(","message":")";
  AppendJsonEscaped(message, body);
  body += "\"}}";
  return Json(http_status, std::move(body));
}

// A trie over path segments: exact children by name, at most one parameter child per node.
struct Router::Node {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> exact;
  std::unique_ptr<Node> param;
  std::string param_name;
  std::map<std::string, Handler, std::less<>> handlers;  // by method
  std::map<std::string, StreamHandler, std::less<>> streams;
  std::optional<WebSocketHandler> websocket;  // GET with Upgrade: websocket
  bool empty() const { return handlers.empty() && streams.empty() && !websocket; }
};

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::Handle(std::string method, std::string pattern, Handler handler) {
  if (!handler) BadRoute(method, pattern, "no handler");
  Node* node = NodeFor(method, pattern);
  if (node->streams.count(method) != 0 ||
      !node->handlers.emplace(method, std::move(handler)).second) {
    BadRoute(method, pattern, "registered twice");
  }
}

void Router::HandleStream(std::string method, std::string pattern, StreamHandler handler) {
  if (!handler) BadRoute(method, pattern, "no handler");
  Node* node = NodeFor(method, pattern);
  if (node->handlers.count(method) != 0 ||
      !node->streams.emplace(method, std::move(handler)).second) {
    BadRoute(method, pattern, "registered twice");
  }
}

Router::Node* Router::NodeFor(const std::string& method, const std::string& pattern) {
  if (method.empty()) BadRoute(method, pattern, "empty method");
  if (!pattern.starts_with('/')) BadRoute(method, pattern, "the pattern must start with '/'");
  Node* node = root_.get();
  for (const std::string_view segment : SplitPath(pattern)) {
    if (segment.starts_with('{') || segment.ends_with('}')) {
      if (segment.size() < 3 || !segment.starts_with('{') || !segment.ends_with('}')) {
        BadRoute(method, pattern, "a parameter segment is \"{name}\"");
      }
      const std::string_view name = segment.substr(1, segment.size() - 2);
      if (!node->param) {
        node->param = std::make_unique<Node>();
        node->param_name = std::string(name);
      } else if (node->param_name != name) {
        BadRoute(
            method, pattern,
            fmt::format("parameter {{{}}} where another route has {{{}}}", name, node->param_name));
      }
      node = node->param.get();
    } else {
      auto& child = node->exact[std::string(segment)];
      if (!child) child = std::make_unique<Node>();
      node = child.get();
    }
  }
  return node;
}

// The first route, exact segments before parameters, whose node has what `pick` finds.
template <typename T, typename Pick>
const T* Router::Find(Request& request, Pick pick) const {
  if (!request.path.starts_with('/')) return nullptr;
  const std::vector<std::string_view> segments = SplitPath(request.path);
  std::map<std::string, std::string> params;
  const T* found = nullptr;
  const std::function<void(const Node&, size_t)> walk = [&](const Node& node, size_t i) {
    if (found != nullptr) return;
    if (i == segments.size()) {
      if (const T* handler = pick(node); handler != nullptr) {
        found = handler;
        request.path_params = params;
      }
      return;
    }
    if (auto it = node.exact.find(segments[i]); it != node.exact.end()) walk(*it->second, i + 1);
    if (found == nullptr && node.param && !segments[i].empty()) {
      params[node.param_name] = std::string(segments[i]);
      walk(*node.param, i + 1);
      params.erase(node.param_name);
    }
  };
  walk(*root_, 0);
  return found;
}

const StreamHandler* Router::FindStream(Request& request) const {
  return Find<StreamHandler>(request, [&](const Node& node) -> const StreamHandler* {
    auto it = node.streams.find(request.method);
    return it == node.streams.end() ? nullptr : &it->second;
  });
}

void Router::HandleWebSocket(std::string pattern, WebSocketHandler handler) {
  if (!handler) BadRoute("GET", pattern, "no handler");
  Node* node = NodeFor("GET", pattern);
  if (node->websocket) BadRoute("GET", pattern, "registered twice");
  node->websocket = std::move(handler);
}

const WebSocketHandler* Router::FindWebSocket(Request& request) const {
  if (request.method != "GET") return nullptr;
  return Find<WebSocketHandler>(request, [](const Node& node) -> const WebSocketHandler* {
    return node.websocket ? &*node.websocket : nullptr;
  });
}

Response Router::Dispatch(Request& request) const {
  if (!request.path.starts_with('/')) {
    return Response::Error(400, "INVALID_ARGUMENT", "the path must start with '/'");
  }
  const std::vector<std::string_view> segments = SplitPath(request.path);

  // Every route whose pattern fits the path, best first (exact before parameter, depth-first).
  struct Match {
    const Node* node;
    std::map<std::string, std::string> params;
  };
  std::vector<Match> matches;
  std::map<std::string, std::string> params;
  const std::function<void(const Node&, size_t)> walk = [&](const Node& node, size_t i) {
    if (i == segments.size()) {
      if (!node.empty()) matches.push_back({&node, params});
      return;
    }
    if (auto it = node.exact.find(segments[i]); it != node.exact.end()) walk(*it->second, i + 1);
    if (node.param && !segments[i].empty()) {
      params[node.param_name] = std::string(segments[i]);
      walk(*node.param, i + 1);
      params.erase(node.param_name);
    }
  };
  walk(*root_, 0);
  if (matches.empty()) {
    return Response::Error(404, "NOT_FOUND", fmt::format("no route for {}", request.path));
  }

  const auto find = [&](std::string_view method) -> std::pair<const Handler*, const Match*> {
    for (const Match& match : matches) {
      const auto& handlers = match.node->handlers;
      if (auto it = handlers.find(method); it != handlers.end()) return {&it->second, &match};
    }
    return {nullptr, nullptr};
  };
  auto [handler, match] = find(request.method);
  if (handler == nullptr && request.method == "HEAD") std::tie(handler, match) = find("GET");
  if (handler == nullptr && request.method == "GET") {
    for (const Match& m : matches) {
      if (!m.node->websocket) continue;
      Response response = Response::Error(
          426, "FAILED_PRECONDITION",
          fmt::format("{} is a WebSocket endpoint: send an Upgrade: websocket request",
                      request.path));
      response.headers.emplace_back("Upgrade", "websocket");
      return response;
    }
  }
  if (handler == nullptr) {
    std::set<std::string> allowed;
    for (const Match& m : matches) {
      for (const auto& [method, unused] : m.node->handlers) {
        allowed.insert(method);
        if (method == "GET") allowed.insert("HEAD");
      }
      for (const auto& [method, unused] : m.node->streams) allowed.insert(method);
      if (m.node->websocket) allowed.insert("GET");
    }
    Response response = Response::Error(
        405, "UNIMPLEMENTED", fmt::format("{} is not allowed on {}", request.method, request.path));
    response.headers.emplace_back("Allow", fmt::format("{}", fmt::join(allowed, ", ")));
    return response;
  }

  request.path_params = match->params;
  try {
    return (*handler)(request);
  } catch (const std::exception& e) {
    spdlog::error("http: handler for {} {} threw: {}", request.method, request.path, e.what());
  } catch (...) {
    spdlog::error("http: handler for {} {} threw a non-exception", request.method, request.path);
  }
  return Response::Error(500, "INTERNAL", "the handler failed");
}

}  // namespace longsana::server::http
