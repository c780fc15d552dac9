// Per-session streaming encoder: RGB frames, one block at a time -> H.264 (libx264 through
// libavcodec) -> fragmented MP4 in memory.
//
// Output layout (ISO BMFF, what a browser's Media Source Extensions SourceBuffer accepts):
//   init_segment()            ftyp + moov (avcC with SPS/PPS, mvex; no samples), made once
//                             by Create().
//   EncodeBlock() -> bytes    exactly one moof + mdat per call, holding all frames of the
//                             block; its first frame is an IDR frame (a GOP never spans two
//                             blocks), so any fragment can start playback after the init
//                             segment (a late viewer joins at any block).
//   EncodeFragment()          the same for part of a block (e.g. one latent frame's 4 video
//                             frames, for lower latency): only a fragment that starts a
//                             block starts with an IDR frame (x264 makes no other: keyint
//                             infinite, no scene cuts); the others continue its GOP and decode
//                             after the fragments since the block's start.
// Timestamps are continuous across blocks: frame n of the session has pts n / fps seconds;
// every moof carries its absolute start time (tfdt, default-base-is-moof). init_segment()
// followed by every fragment in order is a complete fragmented MP4 file (no trailer needed).
//
// Input frames: uint8 RGB, [num_frames, height, width, 3] contiguous (frames first, rows top to
// bottom, RGB interleaved), i.e. what the VAE decode emits. Blocks may have different frame
// counts (e.g. 41 frames for the first block of a session, 40 for the later ones).
//
// Colour: converted to yuv420p with the BT.709 matrix, limited range, and signalled as such in
// the H.264 VUI (primaries, transfer and matrix BT.709).
//
// Thread-safety: an encoder is not thread-safe; calls must be serialized (e.g. one worker
// thread per session at a time). It may be created on one thread and used on another.
// Different encoders are independent.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/media/ffmpeg_util.h"

extern "C" {
struct AVStream;
}

namespace longsana::engine {

struct EncoderSettings {
  static constexpr int kDefaultCrf = 23;
  static constexpr int kMaxDimension = 8192;

  // Frame size in pixels. Must be even (yuv420p) and in [2, kMaxDimension].
  int width = 0;
  int height = 0;
  // Frames per second of the output, in [1, 240].
  int fps = 16;
  // Rate control: constant quality (crf in [1, 51]; kDefaultCrf when neither is set) or an
  // average bitrate in bits/s (bitrate_bps in [10'000, 1'000'000'000], capped by a one-second
  // VBV buffer). Setting both is an error.
  std::optional<int> crf;
  std::optional<int64_t> bitrate_bps;
  // x264 speed preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower,
  // veryslow or placebo.
  std::string preset = "veryfast";
  // H.264 profile: baseline, main or high. The tune is always zerolatency (no B-frames, no
  // lookahead, sliced threads): the encoder relies on it to emit every frame of a block before
  // the block ends.
  std::string profile = "high";
  // x264 threads (sliced threading, so no added latency); 0 = automatic. In [0, 64].
  int threads = 0;

  // OK, or InvalidArgument naming the offending field.
  absl::Status Validate() const;
  // crf when set, else kDefaultCrf; meaningless in bitrate mode.
  int EffectiveCrf() const { return crf.value_or(kDefaultCrf); }
};

// One encoded block.
struct EncodedFragment {
  std::string bytes;        // exactly one moof + mdat box
  int64_t block_index = 0;  // 0-based block the fragment belongs to
  bool keyframe = true;     // starts a block with an IDR frame (EncodeFragment's starts_block)
  int64_t first_frame = 0;  // index of the block's first frame in the session
  int num_frames = 0;
  double start_seconds = 0;     // first_frame / fps
  double duration_seconds = 0;  // num_frames / fps
};

class Fmp4Encoder {
 public:
  // Opens libx264 and the mp4 muxer and produces the init segment.
  // Errors: InvalidArgument from settings.Validate(); FailedPrecondition when this FFmpeg
  // build lacks libx264 or the mp4 muxer; otherwise the Status of the failing FFmpeg call
  // (FfmpegError), or Internal when the muxer's output is not the documented layout.
  static absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Create(const EncoderSettings& settings);

  ~Fmp4Encoder();
  Fmp4Encoder(const Fmp4Encoder&) = delete;
  Fmp4Encoder& operator=(const Fmp4Encoder&) = delete;

  const EncoderSettings& settings() const { return settings_; }

  // ftyp + moov; send it before the first fragment (separately or prepended to it), and again
  // to every late viewer before the fragment it joins at.
  const std::string& init_segment() const { return init_segment_; }

  // RFC 6381 codec parameter from the stream's SPS, "avc1.PPCCLL" (profile_idc,
  // constraint flags, level_idc in lowercase hex), e.g. "avc1.64001e".
  const std::string& codec_string() const { return codec_string_; }
  // MIME type for MediaSource.addSourceBuffer, e.g. `video/mp4; codecs="avc1.64001e"`.
  std::string mime_type() const;

  // Encodes the next block: `rgb` holds num_frames frames, [num_frames, height, width, 3].
  // Returns the block's fragment. Errors: InvalidArgument naming num_frames or rgb (wrong
  // size) leaves the encoder usable; any other error (an FFmpeg failure, a broken internal
  // invariant such as frames held back by the encoder) leaves the stream inconsistent, and
  // every later call returns FailedPrecondition carrying the original error.
  absl::StatusOr<EncodedFragment> EncodeBlock(std::span<const uint8_t> rgb, int num_frames) {
    return EncodeFragment(rgb, num_frames, /*starts_block=*/true);
  }
  // The next `num_frames` frames as one fragment; `starts_block` makes its first frame an
  // IDR frame and begins a new block. The session's first fragment must start a block
  // (InvalidArgument otherwise). Errors as EncodeBlock.
  absl::StatusOr<EncodedFragment> EncodeFragment(std::span<const uint8_t> rgb, int num_frames,
                                                 bool starts_block);

  int64_t frames_encoded() const { return next_frame_; }
  int64_t blocks_encoded() const { return next_block_; }

 private:
  explicit Fmp4Encoder(const EncoderSettings& settings);
  absl::Status Open();
  absl::StatusOr<EncodedFragment> EncodeImpl(std::span<const uint8_t> rgb, int num_frames,
                                             bool starts_block);
  // Sends every packet the encoder has ready to the muxer; counts them in *packets_in_block.
  absl::Status WriteReadyPackets(int64_t first_frame, bool starts_block, int* packets_in_block);

  const EncoderSettings settings_;
  // Members are destroyed in reverse declaration order: the muxer (format context) is freed
  // before the AVIOContext it writes to, and both before the string the AVIO write callback
  // appends the muxer's output to.
  std::string pending_output_;
  AvioContextPtr avio_;
  AvFormatContextPtr muxer_;
  AvCodecContextPtr codec_;
  AvFramePtr frame_;  // the yuv420p frame handed to the encoder, reused per frame
  AvPacketPtr packet_;
  SwsContextPtr rgb_to_yuv_;
  std::vector<uint8_t> padded_rgb_;  // one source frame plus the padding swscale over-reads
  AVStream* stream_ = nullptr;  // owned by muxer_

  std::string init_segment_;
  std::string codec_string_;
  int64_t next_frame_ = 0;
  int64_t next_block_ = 0;
  absl::Status failure_;  // first non-argument error; OK while the stream is consistent
};

}  // namespace longsana::engine
