#include "engine/media/fmp4_encoder.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <cerrno>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/media/mp4_boxes.h"
#include "fmt/format.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
}

#include "engine/common/request_checks.h"

namespace longsana::engine {
namespace {

constexpr std::array<std::string_view, 3> kH264Profiles = {"baseline", "main", "high"};
constexpr int kAvioBufferSize = 64 * 1024;
constexpr size_t kSourcePadding = 64;  // bytes after a source frame that swscale may read

template <size_t N>
bool Contains(const std::array<std::string_view, N>& values, std::string_view value) {
  for (std::string_view v : values) {
    if (v == value) return true;
  }
  return false;
}

template <size_t N>
std::string JoinNames(const std::array<std::string_view, N>& values) {
  return StrJoin(values, ", ");
}

// The AVIOContext write callback's buffer became const in libavformat 61.
#if LIBAVFORMAT_VERSION_MAJOR >= 61
int AppendToString(void* opaque, const uint8_t* data, int size) {
#else
int AppendToString(void* opaque, uint8_t* data, int size) {
#endif
  static_cast<std::string*>(opaque)->append(reinterpret_cast<const char*>(data),
                                            static_cast<size_t>(size));
  return size;
}

// Sets an AVOption of an FFmpeg object's own class (e.g. a codec's or muxer's priv_data),
// naming the option in the error. Not searching children matters: AVCodecContext has a
// generic "profile" option that would shadow libx264's.
absl::Status SetOption(void* object, const char* name, const std::string& value) {
  const int ret = av_opt_set(object, name, value.c_str(), /*search_flags=*/0);
  if (ret < 0) return FfmpegError(ret, StrCat("av_opt_set(", name, "=", value, ")"));
  return absl::OkStatus();
}

// "avc1.PPCCLL" from the first SPS NAL unit of Annex B extradata (what libx264 exports with
// AV_CODEC_FLAG_GLOBAL_HEADER) or from an avcC record (first byte 1).
absl::StatusOr<std::string> AvcCodecString(const uint8_t* data, int size) {
  if (data == nullptr || size < 4) {
    return absl::InternalError("libx264 exported no SPS in its extradata");
  }
  if (data[0] == 1) {  // avcC: version, profile, constraints, level
    return fmt::format("avc1.{:02x}{:02x}{:02x}", data[1], data[2], data[3]);
  }
  for (int i = 0; i + 6 < size; ++i) {
    // A start code 00 00 01 (the 4-byte form ends with the same three bytes).
    if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 && (data[i + 3] & 0x1f) == 7) {
      return fmt::format("avc1.{:02x}{:02x}{:02x}", data[i + 4], data[i + 5], data[i + 6]);
    }
  }
  return absl::InternalError("no SPS NAL unit in libx264's extradata");
}

absl::Status ExpectBoxLayout(std::string_view bytes, const std::vector<std::string>& expected,
                             std::string_view what) {
  absl::StatusOr<std::vector<Mp4Box>> boxes = ParseMp4Boxes(bytes);
  if (!boxes.ok()) {
    return absl::InternalError(
        StrCat("mp4 muxer wrote a malformed ", what, ": ", boxes.status().message()));
  }
  const std::vector<std::string> types = Mp4BoxTypes(*boxes);
  if (types != expected) {
    return absl::InternalError(StrCat("mp4 muxer wrote ", what, " with boxes [",
                                      StrJoin(types, ", "), "], expected [",
                                      StrJoin(expected, ", "), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EncoderSettings::Validate() const {
  auto check_dimension = [](std::string_view name, int value) -> absl::Status {
    if (value < 2 || value > kMaxDimension) {
      return absl::InvalidArgumentError(
          StrCat(name, " must be in [2, ", kMaxDimension, "], got ", value));
    }
    if (value % 2 != 0) {
      return absl::InvalidArgumentError(
          StrCat(name, " must be even (yuv420p subsamples chroma by 2), got ", value));
    }
    return absl::OkStatus();
  };
  LONGSANA_RETURN_IF_ERROR(check_dimension("width", width));
  LONGSANA_RETURN_IF_ERROR(check_dimension("height", height));
  if (fps < 1 || fps > 240) {
    return absl::InvalidArgumentError(StrCat("fps must be in [1, 240], got ", fps));
  }
  if (crf.has_value() && bitrate_bps.has_value()) {
    return absl::InvalidArgumentError(
        "crf and bitrate_bps are mutually exclusive: set at most one");
  }
  // crf 0 is lossless, which x264 refuses under the High profile we stream.
  if (crf.has_value() && (*crf < 1 || *crf > 51)) {
    return absl::InvalidArgumentError(StrCat("crf must be in [1, 51], got ", *crf));
  }
  if (bitrate_bps.has_value() && (*bitrate_bps < 10'000 || *bitrate_bps > 1'000'000'000)) {
    return absl::InvalidArgumentError(
        StrCat("bitrate_bps must be in [10000, 1000000000], got ", *bitrate_bps));
  }
  if (!Contains(kX264Presets, preset)) {
    return absl::InvalidArgumentError(
        StrCat("preset must be one of ", JoinNames(kX264Presets), ", got '", preset, "'"));
  }
  if (!Contains(kH264Profiles, profile)) {
    return absl::InvalidArgumentError(
        StrCat("profile must be one of ", JoinNames(kH264Profiles), ", got '", profile, "'"));
  }
  if (threads < 0 || threads > 64) {
    return absl::InvalidArgumentError(StrCat("threads must be in [0, 64], got ", threads));
  }
  return absl::OkStatus();
}

Fmp4Encoder::Fmp4Encoder(const EncoderSettings& settings) : settings_(settings) {}

Fmp4Encoder::~Fmp4Encoder() = default;

absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Fmp4Encoder::Create(const EncoderSettings& settings) {
  LONGSANA_RETURN_IF_ERROR(settings.Validate());
  std::unique_ptr<Fmp4Encoder> encoder(new Fmp4Encoder(settings));
  LONGSANA_RETURN_IF_ERROR(encoder->Open());
  return encoder;
}

absl::Status Fmp4Encoder::Open() {
  const EncoderSettings& s = settings_;
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (codec == nullptr) {
    return absl::FailedPreconditionError("this FFmpeg build has no libx264 encoder");
  }

  AVFormatContext* muxer_raw = nullptr;
  int ret = avformat_alloc_output_context2(&muxer_raw, nullptr, "mp4", nullptr);
  muxer_.reset(muxer_raw);
  if (ret < 0) return FfmpegError(ret, "avformat_alloc_output_context2(mp4)");

  codec_.reset(avcodec_alloc_context3(codec));
  if (codec_ == nullptr) return absl::ResourceExhaustedError("avcodec_alloc_context3 failed");
  AVCodecContext* c = codec_.get();
  c->width = s.width;
  c->height = s.height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->sample_aspect_ratio = AVRational{1, 1};
  c->time_base = AVRational{1, s.fps};  // one tick per frame
  c->framerate = AVRational{s.fps, 1};
  c->max_b_frames = 0;
  // The stream parameters (SPS/PPS) go into avcC once, not in front of every IDR.
  c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER | AV_CODEC_FLAG_CLOSED_GOP;
  c->thread_count = s.threads;
  // FFmpeg's libx264 wrapper overrides zerolatency's sliced threads from thread_type
  // (b_sliced_threads = thread_type == FF_THREAD_SLICE). x264 frame threads hold back one
  // frame per thread (with FF_THREAD_FRAME and 2 threads a 9-frame block yields 8 packets);
  // slice threads return every frame's packet before the next frame is taken.
  c->thread_type = FF_THREAD_SLICE;
  c->color_range = AVCOL_RANGE_MPEG;
  c->color_primaries = AVCOL_PRI_BT709;
  c->color_trc = AVCOL_TRC_BT709;
  c->colorspace = AVCOL_SPC_BT709;
  if (s.bitrate_bps.has_value()) {
    c->bit_rate = *s.bitrate_bps;
    c->rc_max_rate = *s.bitrate_bps;
    c->rc_buffer_size = static_cast<int>(std::min<int64_t>(*s.bitrate_bps, INT32_MAX));
  } else {
    LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "crf", std::to_string(s.EffectiveCrf())));
  }
  LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "preset", s.preset));
  LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "tune", "zerolatency"));
  LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "profile", s.profile));
  // An I frame requested through AVFrame::pict_type becomes an IDR (not just a recovery
  // point), so every block starts a closed GOP.
  LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "forced-idr", "1"));
  // Key frames come only from the per-block request: no periodic ones (a GOP would then
  // start mid-block) and no scene-cut ones.
  LONGSANA_RETURN_IF_ERROR(SetOption(c->priv_data, "x264-params", "keyint=infinite:scenecut=0"));
  ret = avcodec_open2(c, codec, nullptr);
  if (ret < 0) return FfmpegError(ret, "avcodec_open2(libx264)");
  LONGSANA_ASSIGN_OR_RETURN(codec_string_, AvcCodecString(c->extradata, c->extradata_size));

  stream_ = avformat_new_stream(muxer_.get(), nullptr);
  if (stream_ == nullptr) return absl::ResourceExhaustedError("avformat_new_stream failed");
  ret = avcodec_parameters_from_context(stream_->codecpar, c);
  if (ret < 0) return FfmpegError(ret, "avcodec_parameters_from_context");
  stream_->time_base = c->time_base;
  stream_->avg_frame_rate = c->framerate;

  auto* avio_buffer = static_cast<unsigned char*>(av_malloc(kAvioBufferSize));
  if (avio_buffer == nullptr) return absl::ResourceExhaustedError("av_malloc(avio buffer)");
  avio_.reset(avio_alloc_context(avio_buffer, kAvioBufferSize, /*write_flag=*/1, &pending_output_,
                                 /*read_packet=*/nullptr, &AppendToString,
                                 /*seek=*/nullptr));
  if (avio_ == nullptr) {
    av_free(avio_buffer);
    return absl::ResourceExhaustedError("avio_alloc_context failed");
  }
  muxer_->pb = avio_.get();
  muxer_->flags |= AVFMT_FLAG_CUSTOM_IO;
  // empty_moov: the moov holds no samples and is written by the header;
  // default_base_moof: sample offsets are relative to each moof (required by MSE);
  // frag_custom: a fragment is cut only when we flush it, once per block.
  LONGSANA_RETURN_IF_ERROR(
      SetOption(muxer_->priv_data, "movflags", "empty_moov+default_base_moof+frag_custom"));
  ret = avformat_write_header(muxer_.get(), nullptr);
  if (ret < 0) return FfmpegError(ret, "avformat_write_header(mp4)");
  avio_flush(muxer_->pb);
  if (muxer_->pb->error < 0) return FfmpegError(muxer_->pb->error, "avio_flush(init segment)");
  init_segment_ = std::move(pending_output_);
  pending_output_.clear();
  LONGSANA_RETURN_IF_ERROR(ExpectBoxLayout(init_segment_, {"ftyp", "moov"}, "init segment"));

  frame_.reset(av_frame_alloc());
  packet_.reset(av_packet_alloc());
  if (frame_ == nullptr || packet_ == nullptr) {
    return absl::ResourceExhaustedError("av_frame_alloc/av_packet_alloc failed");
  }
  frame_->format = AV_PIX_FMT_YUV420P;
  frame_->width = s.width;
  frame_->height = s.height;
  frame_->color_range = c->color_range;
  frame_->color_primaries = c->color_primaries;
  frame_->color_trc = c->color_trc;
  frame_->colorspace = c->colorspace;
  ret = av_frame_get_buffer(frame_.get(), 0);
  if (ret < 0) return FfmpegError(ret, "av_frame_get_buffer(yuv420p)");

  rgb_to_yuv_.reset(sws_getContext(s.width, s.height, AV_PIX_FMT_RGB24, s.width, s.height,
                                   AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND, nullptr,
                                   nullptr, nullptr));
  if (rgb_to_yuv_ == nullptr) return absl::InternalError("sws_getContext(rgb24->yuv420p) failed");
  // For an RGB source the destination table selects the RGB->YUV matrix: BT.709, RGB full
  // range in, limited range out (matching the VUI set above).
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  ret = sws_setColorspaceDetails(rgb_to_yuv_.get(), bt709, /*srcRange=*/1, bt709,
                                 /*dstRange=*/0, /*brightness=*/0, /*contrast=*/1 << 16,
                                 /*saturation=*/1 << 16);
  if (ret < 0) return absl::InternalError("sws_setColorspaceDetails(BT.709) failed");
  return absl::OkStatus();
}

std::string Fmp4Encoder::mime_type() const {
  return StrCat("video/mp4; codecs=\"", codec_string_, "\"");
}

absl::StatusOr<EncodedFragment> Fmp4Encoder::EncodeFragment(std::span<const uint8_t> rgb,
                                                            int num_frames, bool starts_block) {
  if (!failure_.ok()) {
    return absl::FailedPreconditionError(
        StrCat("encoder is unusable after an earlier error: ", failure_.message()));
  }
  if (num_frames <= 0) {
    return absl::InvalidArgumentError(StrCat("num_frames must be positive, got ", num_frames));
  }
  const uint64_t expected_bytes =
      static_cast<uint64_t>(num_frames) * settings_.height * settings_.width * 3;
  if (rgb.data() == nullptr || rgb.size() != expected_bytes) {
    return absl::InvalidArgumentError(StrCat(
        "rgb must hold num_frames * height * width * 3 = ", num_frames, " * ", settings_.height,
        " * ", settings_.width, " * 3 = ", expected_bytes, " bytes, got ", rgb.size()));
  }
  if (!starts_block && next_block_ == 0) {
    return absl::InvalidArgumentError(
        "starts_block: the first fragment of a stream must start a block (an IDR frame)");
  }
  absl::StatusOr<EncodedFragment> fragment = EncodeImpl(rgb, num_frames, starts_block);
  if (!fragment.ok()) failure_ = fragment.status();
  return fragment;
}

absl::StatusOr<EncodedFragment> Fmp4Encoder::EncodeImpl(std::span<const uint8_t> rgb,
                                                        int num_frames, bool starts_block) {
  const int64_t first_frame = next_frame_;
  const size_t frame_bytes = static_cast<size_t>(settings_.height) * settings_.width * 3;
  padded_rgb_.resize(frame_bytes + kSourcePadding);
  const int rgb_stride = settings_.width * 3;
  int packets_in_block = 0;
  for (int i = 0; i < num_frames; ++i) {
    // The encoder may still reference the previous frame's buffers; get private ones if so.
    int ret = av_frame_make_writable(frame_.get());
    if (ret < 0) return FfmpegError(ret, "av_frame_make_writable");
    // swscale's SIMD paths read up to a vector past the end of the source; the caller's
    // frames have no padding, so each frame is copied into a padded buffer first.
    std::memcpy(padded_rgb_.data(), rgb.data() + frame_bytes * i, frame_bytes);
    const uint8_t* src[1] = {padded_rgb_.data()};
    const int src_stride[1] = {rgb_stride};
    ret = sws_scale(rgb_to_yuv_.get(), src, src_stride, 0, settings_.height, frame_->data,
                    frame_->linesize);
    if (ret < 0) return FfmpegError(ret, "sws_scale(rgb24->yuv420p)");
    frame_->pts = first_frame + i;  // in codec time base 1/fps
    frame_->pict_type = i == 0 && starts_block ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    ret = avcodec_send_frame(codec_.get(), frame_.get());
    if (ret < 0) return FfmpegError(ret, "avcodec_send_frame(libx264)");
    LONGSANA_RETURN_IF_ERROR(WriteReadyPackets(first_frame, starts_block, &packets_in_block));
  }
  // zerolatency + slice threads: x264 returns each frame's packet before taking the next
  // frame, so nothing is pending here. Draining (sending a null frame) would end the stream,
  // so a held-back frame is a broken invariant, not something to flush.
  if (packets_in_block != num_frames) {
    return absl::InternalError(StrCat("libx264 returned ", packets_in_block, " packets for the ",
                                      num_frames, " frames of block ", next_block_,
                                      " (frames held back across the block boundary)"));
  }
  // frag_custom: a null packet cuts the fragment holding everything written since the last
  // cut (one moof + mdat).
  int ret = av_write_frame(muxer_.get(), nullptr);
  if (ret < 0) return FfmpegError(ret, "av_write_frame(flush fragment)");
  avio_flush(muxer_->pb);
  if (muxer_->pb->error < 0) return FfmpegError(muxer_->pb->error, "avio_flush(fragment)");

  EncodedFragment fragment;
  fragment.bytes = std::move(pending_output_);
  pending_output_.clear();
  const int64_t block = starts_block ? next_block_ : next_block_ - 1;
  LONGSANA_RETURN_IF_ERROR(
      ExpectBoxLayout(fragment.bytes, {"moof", "mdat"}, StrCat("the fragment of block ", block)));
  fragment.block_index = block;
  fragment.keyframe = starts_block;
  fragment.first_frame = first_frame;
  fragment.num_frames = num_frames;
  fragment.start_seconds = static_cast<double>(first_frame) / settings_.fps;
  fragment.duration_seconds = static_cast<double>(num_frames) / settings_.fps;
  next_frame_ += num_frames;
  if (starts_block) ++next_block_;
  return fragment;
}

absl::Status Fmp4Encoder::WriteReadyPackets(int64_t first_frame, bool starts_block,
                                            int* packets_in_block) {
  while (true) {
    int ret = avcodec_receive_packet(codec_.get(), packet_.get());
    if (ret == AVERROR(EAGAIN)) return absl::OkStatus();
    if (ret < 0) return FfmpegError(ret, "avcodec_receive_packet(libx264)");
    // Without B-frames packets come out in input order, one per frame.
    const int64_t expected_pts = first_frame + *packets_in_block;
    if (packet_->pts != expected_pts || packet_->dts != expected_pts) {
      const int64_t pts = packet_->pts, dts = packet_->dts;
      av_packet_unref(packet_.get());
      return absl::InternalError(StrCat("libx264 packet has pts ", pts, " dts ", dts, ", expected ",
                                        expected_pts, " (in 1/fps units)"));
    }
    if (starts_block && *packets_in_block == 0 && (packet_->flags & AV_PKT_FLAG_KEY) == 0) {
      av_packet_unref(packet_.get());
      return absl::InternalError(
          StrCat("libx264 did not start block ", next_block_, " with a key frame"));
    }
    packet_->duration = 1;  // the last sample's duration in the fragment comes from here
    packet_->stream_index = stream_->index;
    av_packet_rescale_ts(packet_.get(), codec_->time_base, stream_->time_base);
    ret = av_write_frame(muxer_.get(), packet_.get());
    av_packet_unref(packet_.get());
    if (ret < 0) return FfmpegError(ret, "av_write_frame(mp4)");
    ++*packets_in_block;
  }
}

}  // namespace longsana::engine
