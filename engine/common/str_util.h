// String building that accepts std::string_view. Debian's Abseil is built with its own
// absl::string_view (not std::string_view), so absl::StrCat rejects std::string_view
// arguments; these helpers format through fmt instead.
#pragma once

#include <iterator>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "fmt/format.h"

namespace longsana {
namespace str_internal {

template <typename T>
void AppendPiece(std::string* out, const T& piece) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out->append(std::string_view(piece));
  } else if constexpr (std::is_same_v<T, absl::string_view>) {
    out->append(piece.data(), piece.size());  // e.g. absl::Status::message()
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", piece);
  }
}

}  // namespace str_internal

// Concatenates strings, string views, characters and numbers.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (str_internal::AppendPiece(&out, args), ...);
  return out;
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (str_internal::AppendPiece(out, args), ...);
}

// Joins the elements of a range (strings or numbers) with `sep`.
template <typename Range>
std::string StrJoin(const Range& range, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& e : range) {
    if (!first) out.append(sep);
    first = false;
    str_internal::AppendPiece(&out, e);
  }
  return out;
}

}  // namespace longsana
