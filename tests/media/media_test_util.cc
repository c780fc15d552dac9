#include "tests/media/media_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/media/ffmpeg_util.h"
#include "engine/media/test_pattern.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
}

namespace longsana::testing {
namespace {

using engine::FfmpegError;

struct MemoryReader {
  std::string_view data;
  int64_t position = 0;
};

int ReadMemory(void* opaque, uint8_t* buffer, int size) {
  auto* reader = static_cast<MemoryReader*>(opaque);
  const int64_t left = static_cast<int64_t>(reader->data.size()) - reader->position;
  if (left <= 0) return AVERROR_EOF;
  const int n = static_cast<int>(std::min<int64_t>(left, size));
  std::memcpy(buffer, reader->data.data() + reader->position, n);
  reader->position += n;
  return n;
}

int64_t SeekMemory(void* opaque, int64_t offset, int whence) {
  auto* reader = static_cast<MemoryReader*>(opaque);
  const int64_t size = static_cast<int64_t>(reader->data.size());
  int64_t target = 0;
  switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE:
      return size;
    case SEEK_SET:
      target = offset;
      break;
    case SEEK_CUR:
      target = reader->position + offset;
      break;
    case SEEK_END:
      target = size + offset;
      break;
    default:
      return AVERROR(EINVAL);
  }
  if (target < 0 || target > size) return AVERROR(EINVAL);
  reader->position = target;
  return target;
}

// Converts a decoded frame to RGB24 honouring its signalled matrix and range.
absl::StatusOr<std::vector<uint8_t>> ToRgb(const AVFrame* frame) {
  engine::SwsContextPtr sws(sws_getContext(
      frame->width, frame->height, static_cast<AVPixelFormat>(frame->format), frame->width,
      frame->height, AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr,
      nullptr, nullptr));
  if (sws == nullptr) return absl::InternalError("sws_getContext(yuv->rgb24) failed");
  const int* coefficients = sws_getCoefficients(frame->colorspace);
  sws_setColorspaceDetails(sws.get(), coefficients, frame->color_range == AVCOL_RANGE_JPEG,
                           coefficients, /*dstRange=*/1, 0, 1 << 16, 1 << 16);
  std::vector<uint8_t> rgb(static_cast<size_t>(frame->width) * frame->height * 3);
  uint8_t* dst[1] = {rgb.data()};
  const int dst_stride[1] = {frame->width * 3};
  const int ret =
      sws_scale(sws.get(), frame->data, frame->linesize, 0, frame->height, dst, dst_stride);
  if (ret < 0) return FfmpegError(ret, "sws_scale(yuv->rgb24)");
  return rgb;
}

absl::Status ReceiveFrames(AVCodecContext* decoder, AVFrame* frame, DecodedVideo* out) {
  while (true) {
    const int ret = avcodec_receive_frame(decoder, frame);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return absl::OkStatus();
    if (ret < 0) return FfmpegError(ret, "avcodec_receive_frame");
    out->frame_pts.push_back(frame->pts);
    out->color_space = frame->colorspace;
    out->color_range = frame->color_range;
    absl::StatusOr<std::vector<uint8_t>> rgb = ToRgb(frame);
    av_frame_unref(frame);
    if (!rgb.ok()) return rgb.status();
    out->rgb_frames.push_back(std::move(*rgb));
  }
}

}  // namespace

absl::StatusOr<EncodedStream> EncodeTestStream(const engine::EncoderSettings& settings,
                                               const std::vector<int>& block_sizes,
                                               int fragment_frames) {
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Fmp4Encoder> encoder,
                            engine::Fmp4Encoder::Create(settings));
  EncodedStream stream;
  stream.init_segment = encoder->init_segment();
  stream.codec_string = encoder->codec_string();
  stream.mime_type = encoder->mime_type();
  const size_t frame_bytes = static_cast<size_t>(settings.width) * settings.height * 3;
  for (int block_size : block_sizes) {
    const int64_t first = encoder->frames_encoded();
    std::vector<uint8_t> block =
        engine::RenderTestPatternBlock(settings.width, settings.height, first, block_size);
    const int piece = fragment_frames > 0 ? fragment_frames : block_size;
    int offset = 0;
    while (offset < block_size) {
      const int remainder = offset == 0 ? block_size % piece : 0;
      const int n = remainder > 0 ? remainder : std::min(piece, block_size - offset);
      LONGSANA_ASSIGN_OR_RETURN(engine::EncodedFragment fragment,
                                encoder->EncodeFragment(std::span<const uint8_t>(block).subspan(
                                                            frame_bytes * offset, frame_bytes * n),
                                                        n, /*starts_block=*/offset == 0));
      stream.fragments.push_back(std::move(fragment));
      offset += n;
    }
    for (int i = 0; i < block_size; ++i) {
      stream.input_frames.emplace_back(block.begin() + frame_bytes * i,
                                       block.begin() + frame_bytes * (i + 1));
    }
  }
  return stream;
}

std::string Concatenate(const EncodedStream& stream, size_t first_block) {
  std::string bytes = stream.init_segment;
  for (size_t i = first_block; i < stream.fragments.size(); ++i) {
    bytes += stream.fragments[i].bytes;
  }
  return bytes;
}

absl::StatusOr<DecodedVideo> DemuxAndDecode(std::string_view mp4) {
  constexpr int kBufferSize = 32 * 1024;
  MemoryReader reader{mp4, 0};
  auto* buffer = static_cast<unsigned char*>(av_malloc(kBufferSize));
  if (buffer == nullptr) return absl::ResourceExhaustedError("av_malloc");
  engine::AvioContextPtr avio(avio_alloc_context(buffer, kBufferSize, /*write_flag=*/0, &reader,
                                                 &ReadMemory, nullptr, &SeekMemory));
  if (avio == nullptr) {
    av_free(buffer);
    return absl::ResourceExhaustedError("avio_alloc_context");
  }
  AVFormatContext* raw = avformat_alloc_context();
  if (raw == nullptr) return absl::ResourceExhaustedError("avformat_alloc_context");
  raw->pb = avio.get();
  raw->flags |= AVFMT_FLAG_CUSTOM_IO;
  // avformat_open_input frees the context on failure.
  int ret = avformat_open_input(&raw, nullptr, nullptr, nullptr);
  if (ret < 0) return FfmpegError(ret, "avformat_open_input");
  engine::AvInputFormatContextPtr demuxer(raw);
  ret = avformat_find_stream_info(demuxer.get(), nullptr);
  if (ret < 0) return FfmpegError(ret, "avformat_find_stream_info");

  DecodedVideo out;
  out.num_streams = static_cast<int>(demuxer->nb_streams);
  const int video = av_find_best_stream(demuxer.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (video < 0) return FfmpegError(video, "av_find_best_stream(video)");
  const AVStream* stream = demuxer->streams[video];
  out.codec_name = avcodec_get_name(stream->codecpar->codec_id);
  out.width = stream->codecpar->width;
  out.height = stream->codecpar->height;
  out.time_base_num = stream->time_base.num;
  out.time_base_den = stream->time_base.den;

  const AVCodec* codec = avcodec_find_decoder(stream->codecpar->codec_id);
  if (codec == nullptr) return absl::FailedPreconditionError("no decoder for the stream");
  engine::AvCodecContextPtr decoder(avcodec_alloc_context3(codec));
  if (decoder == nullptr) return absl::ResourceExhaustedError("avcodec_alloc_context3");
  ret = avcodec_parameters_to_context(decoder.get(), stream->codecpar);
  if (ret < 0) return FfmpegError(ret, "avcodec_parameters_to_context");
  decoder->thread_count = 1;
  decoder->pkt_timebase = stream->time_base;
  ret = avcodec_open2(decoder.get(), codec, nullptr);
  if (ret < 0) return FfmpegError(ret, "avcodec_open2(decoder)");

  engine::AvPacketPtr packet(av_packet_alloc());
  engine::AvFramePtr frame(av_frame_alloc());
  if (packet == nullptr || frame == nullptr) return absl::ResourceExhaustedError("alloc");
  while (true) {
    ret = av_read_frame(demuxer.get(), packet.get());
    if (ret == AVERROR_EOF) break;
    if (ret < 0) return FfmpegError(ret, "av_read_frame");
    if (packet->stream_index != video) {
      av_packet_unref(packet.get());
      continue;
    }
    out.packets.push_back(DemuxedPacket{packet->pts, packet->dts, packet->duration, packet->pos,
                                        (packet->flags & AV_PKT_FLAG_KEY) != 0});
    ret = avcodec_send_packet(decoder.get(), packet.get());
    av_packet_unref(packet.get());
    if (ret < 0) return FfmpegError(ret, "avcodec_send_packet");
    LONGSANA_RETURN_IF_ERROR(ReceiveFrames(decoder.get(), frame.get(), &out));
  }
  ret = avcodec_send_packet(decoder.get(), nullptr);
  if (ret < 0) return FfmpegError(ret, "avcodec_send_packet(flush)");
  LONGSANA_RETURN_IF_ERROR(ReceiveFrames(decoder.get(), frame.get(), &out));
  return out;
}

double Psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size() || a.empty()) return 0.0;
  double squared_error = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    squared_error += d * d;
  }
  if (squared_error == 0.0) return std::numeric_limits<double>::infinity();
  const double mse = squared_error / static_cast<double>(a.size());
  return 10.0 * std::log10(255.0 * 255.0 / mse);
}

absl::StatusOr<std::string_view> ChildPayload(std::string_view payload, std::string_view type) {
  LONGSANA_ASSIGN_OR_RETURN(std::vector<engine::Mp4Box> boxes, engine::ParseMp4Boxes(payload));
  for (const engine::Mp4Box& box : boxes) {
    if (box.type == type) return box.Payload(payload);
  }
  return absl::NotFoundError(StrCat("no '", type, "' box"));
}

absl::StatusOr<std::string_view> BoxPath(std::string_view bytes,
                                         const std::vector<std::string_view>& path) {
  std::string_view current = bytes;
  for (std::string_view type : path) {
    absl::StatusOr<std::string_view> child = ChildPayload(current, type);
    if (!child.ok()) {
      return absl::NotFoundError(
          StrCat("box path ", StrJoin(path, "/"), ": ", child.status().message()));
    }
    current = *child;
  }
  return current;
}

uint32_t ReadU32(std::string_view bytes, size_t offset) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(bytes.at(offset + i));
  return value;
}

uint64_t ReadU64(std::string_view bytes, size_t offset) {
  return (static_cast<uint64_t>(ReadU32(bytes, offset)) << 32) | ReadU32(bytes, offset + 4);
}

}  // namespace longsana::testing
