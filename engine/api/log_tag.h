// The tag that starts every session-scoped log line, written the same way by the engine and
// the server:
//
//   [session=5812388210334937711 tenant=acme request_id=4f1c9e0b] block 3 sent
//
// Fields appear in this order and only when known (a request rejected before it became a
// session has no session id). Values never contain a space or ']' (see SanitizeLogValue), so
// the tag can be parsed back: the server's JSON log format lifts the fields into their own
// JSON keys (server/logging.h). Header-only: no dependencies.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace longsana::engine {

struct LogTagFields {
  uint64_t session_id = 0;  // 0: none
  std::string tenant;
  std::string request_id;
};

// `value` with every byte outside printable ASCII, and every space or ']', replaced by '_';
// at most 128 bytes.
inline std::string SanitizeLogValue(std::string_view value) {
  std::string out(value.substr(0, 128));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ']') c = '_';
  }
  return out;
}

// "[session=ID tenant=T request_id=R]" with the known fields; "" when none is known.
inline std::string FormatLogTag(const LogTagFields& fields) {
  std::string out;
  auto add = [&](std::string_view key, std::string_view value) {
    out += out.empty() ? "[" : " ";
    out += key;
    out += '=';
    out += SanitizeLogValue(value);
  };
  if (fields.session_id != 0) add("session", std::to_string(fields.session_id));
  if (!fields.tenant.empty()) add("tenant", fields.tenant);
  if (!fields.request_id.empty()) add("request_id", fields.request_id);
  if (!out.empty()) out += ']';
  return out;
}

// Splits a message that starts with a tag into its fields and the rest of the message
// (without the separating space). nullopt when `message` does not start with a tag.
struct ParsedLogTag {
  LogTagFields fields;
  std::string_view rest;
};
inline std::optional<ParsedLogTag> ParseLogTag(std::string_view message) {
  if (!message.starts_with("[")) return std::nullopt;
  const size_t close = message.find(']');
  if (close == std::string_view::npos) return std::nullopt;
  ParsedLogTag parsed;
  std::string_view body = message.substr(1, close - 1);
  bool any = false;
  while (!body.empty()) {
    const size_t space = body.find(' ');
    const std::string_view item = body.substr(0, space);
    body = space == std::string_view::npos ? std::string_view() : body.substr(space + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) return std::nullopt;
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "session") {
      uint64_t id = 0;
      for (const char c : value) {
        if (c < '0' || c > '9') return std::nullopt;
        id = id * 10 + static_cast<uint64_t>(c - '0');
      }
      parsed.fields.session_id = id;
    } else if (key == "tenant") {
      parsed.fields.tenant = std::string(value);
    } else if (key == "request_id") {
      parsed.fields.request_id = std::string(value);
    } else {
      return std::nullopt;
    }
    any = true;
  }
  if (!any) return std::nullopt;
  parsed.rest = message.substr(close + 1);
  if (parsed.rest.starts_with(" ")) parsed.rest.remove_prefix(1);
  return parsed;
}

}  // namespace longsana::engine
