// Minimal UTF-8 decoding for prompt handling (torch-free, header-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace longsana::engine {

// Decodes the code point starting at text[i] into *cp and returns its length in bytes, or 0
// when the bytes there are not well-formed UTF-8 (truncated sequence, bad continuation byte,
// overlong form, surrogate, or a value above U+10FFFF).
inline int DecodeUtf8At(std::string_view text, size_t i, uint32_t* cp) {
  const auto c = static_cast<unsigned char>(text[i]);
  int len = 0;
  uint32_t v = 0, min = 0;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (int k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(text[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    v = (v << 6) | (cc & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

// True when `text` is well-formed UTF-8 (every Python str encodes to such bytes).
inline bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const int len = DecodeUtf8At(text, i, &cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace longsana::engine
