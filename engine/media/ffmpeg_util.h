// RAII ownership of FFmpeg objects and the FFmpeg error -> absl::Status conversion.
//
// Every FFmpeg object the media code allocates is held by one of the unique_ptr aliases below
// from the moment it is created, so every early return frees it. The header only
// forward-declares FFmpeg types; include the FFmpeg headers where the objects are used.
//
// Thread-safety: the helpers are stateless; the objects follow FFmpeg's own rules (one thread
// at a time per object).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"

extern "C" {
struct AVCodecContext;
struct AVFormatContext;
struct AVFrame;
struct AVIOContext;
struct AVPacket;
struct SwsContext;
}

namespace longsana::engine {

// The av_strerror text of an FFmpeg error code (negative AVERROR value); never empty.
std::string FfmpegErrorText(int error_code);

// Converts a negative FFmpeg return value into a Status whose message names the failed
// operation and carries the av_strerror text and the numeric code, e.g.
// "avcodec_open2(libx264): Invalid argument (AVERROR -22)".
// Codes: AVERROR(ENOMEM) -> ResourceExhausted; AVERROR_ENCODER_NOT_FOUND,
// AVERROR_MUXER_NOT_FOUND, AVERROR_DECODER_NOT_FOUND, AVERROR_DEMUXER_NOT_FOUND and
// AVERROR_OPTION_NOT_FOUND -> FailedPrecondition (the FFmpeg build lacks a component);
// AVERROR_INVALIDDATA -> DataLoss; anything else -> Internal. Settings are validated before
// they reach FFmpeg, so an FFmpeg EINVAL is our bug or FFmpeg's, not the caller's: Internal.
// Requires error_code < 0.
absl::Status FfmpegError(int error_code, std::string_view operation);

// Process-wide: FFmpeg/x264 log only warnings and errors (x264 prints per-encoder statistics
// at info level, one screenful per session). Call once from a process's setup.
void QuietFfmpegLogging();

struct AvCodecContextDeleter {
  void operator()(AVCodecContext* ctx) const;  // avcodec_free_context
};
// Frees the format context only (avformat_free_context, which also runs the muxer's deinit).
// A custom AVIOContext assigned to ctx->pb is owned separately (AvioContextPtr) and must
// outlive the format context: declare the AvioContextPtr member before the format context.
struct AvFormatContextDeleter {
  void operator()(AVFormatContext* ctx) const;
};
// Frees a context opened with avformat_open_input (avformat_close_input).
struct AvInputFormatContextDeleter {
  void operator()(AVFormatContext* ctx) const;
};
// Frees a custom AVIOContext and its (possibly reallocated) buffer.
struct AvioContextDeleter {
  void operator()(AVIOContext* ctx) const;
};
struct AvFrameDeleter {
  void operator()(AVFrame* frame) const;  // av_frame_free
};
struct AvPacketDeleter {
  void operator()(AVPacket* packet) const;  // av_packet_free
};
struct SwsContextDeleter {
  void operator()(SwsContext* ctx) const;  // sws_freeContext
};

using AvCodecContextPtr = std::unique_ptr<AVCodecContext, AvCodecContextDeleter>;
using AvFormatContextPtr = std::unique_ptr<AVFormatContext, AvFormatContextDeleter>;
using AvInputFormatContextPtr = std::unique_ptr<AVFormatContext, AvInputFormatContextDeleter>;
using AvioContextPtr = std::unique_ptr<AVIOContext, AvioContextDeleter>;
using AvFramePtr = std::unique_ptr<AVFrame, AvFrameDeleter>;
using AvPacketPtr = std::unique_ptr<AVPacket, AvPacketDeleter>;
using SwsContextPtr = std::unique_ptr<SwsContext, SwsContextDeleter>;

}  // namespace longsana::engine
