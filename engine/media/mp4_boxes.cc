#include "engine/media/mp4_boxes.h"

#include "engine/common/str_util.h"

namespace longsana::engine {
namespace {

uint64_t ReadBigEndian(std::string_view bytes, uint64_t offset, int width) {
  uint64_t value = 0;
  for (int i = 0; i < width; ++i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[offset + i]);
  }
  return value;
}

}  // namespace

absl::StatusOr<std::vector<Mp4Box>> ParseMp4Boxes(std::string_view bytes) {
  std::vector<Mp4Box> boxes;
  uint64_t offset = 0;
  const uint64_t end = bytes.size();
  while (offset < end) {
    if (end - offset < 8) {
      return absl::InvalidArgumentError(StrCat("mp4: truncated box header at offset ", offset, " (",
                                               end - offset, " bytes left)"));
    }
    Mp4Box box;
    box.offset = offset;
    box.type = std::string(bytes.substr(offset + 4, 4));
    box.header_size = 8;
    box.size = ReadBigEndian(bytes, offset, 4);
    if (box.size == 1) {
      if (end - offset < 16) {
        return absl::InvalidArgumentError(
            StrCat("mp4: truncated largesize of box '", box.type, "' at offset ", offset));
      }
      box.size = ReadBigEndian(bytes, offset + 8, 8);
      box.header_size = 16;
    } else if (box.size == 0) {
      box.size = end - offset;
    }
    if (box.size < box.header_size) {
      return absl::InvalidArgumentError(StrCat("mp4: box '", box.type, "' at offset ", offset,
                                               " has size ", box.size,
                                               ", smaller than its header"));
    }
    if (box.size > end - offset) {
      return absl::InvalidArgumentError(StrCat("mp4: box '", box.type, "' at offset ", offset,
                                               " has size ", box.size, " but only ", end - offset,
                                               " bytes remain"));
    }
    offset += box.size;
    boxes.push_back(std::move(box));
  }
  return boxes;
}

std::vector<std::string> Mp4BoxTypes(const std::vector<Mp4Box>& boxes) {
  std::vector<std::string> types;
  types.reserve(boxes.size());
  for (const Mp4Box& box : boxes) types.push_back(box.type);
  return types;
}

}  // namespace longsana::engine
