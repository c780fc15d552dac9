// Minimal ISO BMFF (MP4) box walker: lists the boxes laid out back to back in a byte range.
// Used by the fMP4 encoder to check that the muxer produced exactly the boxes it promises
// (ftyp + moov for the init segment, moof + mdat per fragment), and by tests to look inside
// them (a container box's children are ParseMp4Boxes(payload)).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace longsana::engine {

struct Mp4Box {
  std::string type;          // four-character code, e.g. "moof"
  uint64_t offset = 0;       // of the box header, relative to the parsed range
  uint64_t size = 0;         // whole box, header included
  uint64_t header_size = 0;  // 8, or 16 with a 64-bit largesize

  // The bytes after the header (children of a container box, or its fields).
  std::string_view Payload(std::string_view range) const {
    return range.substr(offset + header_size, size - header_size);
  }
};

// Parses the boxes that tile `bytes` exactly. A size field of 0 ("to the end") is accepted
// for the last box. Errors: InvalidArgument naming the offset when a header is truncated, a
// size is smaller than its header or a box runs past the end of the range.
absl::StatusOr<std::vector<Mp4Box>> ParseMp4Boxes(std::string_view bytes);

// The box types in order, e.g. {"moof", "mdat"}.
std::vector<std::string> Mp4BoxTypes(const std::vector<Mp4Box>& boxes);

}  // namespace longsana::engine
