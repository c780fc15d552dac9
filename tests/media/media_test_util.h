// Test helpers for the fMP4 encoder: encode a synthetic stream, demux + decode bytes with
// libavformat/libavcodec, compare frames (tests only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/media/fmp4_encoder.h"
#include "engine/media/mp4_boxes.h"

namespace longsana::testing {

// A stream encoded from the test pattern: the input frames, the init segment and one fragment
// per block.
struct EncodedStream {
  std::string init_segment;
  std::string codec_string;
  std::string mime_type;
  std::vector<engine::EncodedFragment> fragments;
  std::vector<std::vector<uint8_t>> input_frames;  // [height, width, 3] each, in order
};

// Encodes blocks of the given sizes (frames) of the test pattern with `settings`. With
// `fragment_frames` > 0 each block is cut into fragments of that many frames (the first
// fragment of a block takes the remainder, e.g. 17 = 1 + 4 x 4 for latent frames), only
// the first of a block starting with a keyframe; 0: one fragment per block.
absl::StatusOr<EncodedStream> EncodeTestStream(const engine::EncoderSettings& settings,
                                               const std::vector<int>& block_sizes,
                                               int fragment_frames = 0);

// init segment + fragments[first_block..] concatenated.
std::string Concatenate(const EncodedStream& stream, size_t first_block = 0);

struct DemuxedPacket {
  int64_t pts = 0;  // stream time base
  int64_t dts = 0;
  int64_t duration = 0;
  int64_t pos = -1;  // byte offset of the sample data in the file
  bool key = false;
};

struct DecodedVideo {
  int num_streams = 0;
  std::string codec_name;  // e.g. "h264"
  int width = 0;
  int height = 0;
  int time_base_num = 0;
  int time_base_den = 0;
  int color_space = -1;                          // AVColorSpace of the decoded frames
  int color_range = -1;                          // AVColorRange of the decoded frames
  std::vector<DemuxedPacket> packets;            // in file order
  std::vector<int64_t> frame_pts;                // decoded frames, output order
  std::vector<std::vector<uint8_t>> rgb_frames;  // decoded frames as RGB24 [h, w, 3]
};

// Demuxes an MP4 held in memory with libavformat and decodes its first video stream with
// libavcodec (single-threaded), converting frames to RGB24 with the colour matrix and range
// the stream signals. Errors carry the FFmpeg error text.
absl::StatusOr<DecodedVideo> DemuxAndDecode(std::string_view mp4);

// Peak signal-to-noise ratio in dB between two uint8 buffers of equal size (infinity when
// identical).
double Psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);

// The first child box of `type` inside `payload`, or NotFound naming the path.
absl::StatusOr<std::string_view> ChildPayload(std::string_view payload, std::string_view type);
// Follows a path of container boxes, e.g. {"moov", "trak", "mdia", "mdhd"}: the payload of
// the last box.
absl::StatusOr<std::string_view> BoxPath(std::string_view bytes,
                                         const std::vector<std::string_view>& path);

uint32_t ReadU32(std::string_view bytes, size_t offset);
uint64_t ReadU64(std::string_view bytes, size_t offset);

}  // namespace longsana::testing
