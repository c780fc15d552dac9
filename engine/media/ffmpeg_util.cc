#include "engine/media/ffmpeg_util.h"

#include <cerrno>

#include "engine/common/str_util.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
}

namespace longsana::engine {

std::string FfmpegErrorText(int error_code) {
  char buffer[AV_ERROR_MAX_STRING_SIZE] = {};
  if (av_strerror(error_code, buffer, sizeof(buffer)) < 0 || buffer[0] == '\0') {
    return StrCat("unknown FFmpeg error ", error_code);
  }
  return std::string(buffer);
}

absl::Status FfmpegError(int error_code, std::string_view operation) {
  std::string message =
      StrCat(operation, ": ", FfmpegErrorText(error_code), " (AVERROR ", error_code, ")");
  switch (error_code) {
    case AVERROR(ENOMEM):
      return absl::ResourceExhaustedError(message);
    case AVERROR_ENCODER_NOT_FOUND:
    case AVERROR_DECODER_NOT_FOUND:
    case AVERROR_MUXER_NOT_FOUND:
    case AVERROR_DEMUXER_NOT_FOUND:
    case AVERROR_OPTION_NOT_FOUND:
      return absl::FailedPreconditionError(message);
    case AVERROR_INVALIDDATA:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

void AvCodecContextDeleter::operator()(AVCodecContext* ctx) const { avcodec_free_context(&ctx); }

void AvFormatContextDeleter::operator()(AVFormatContext* ctx) const { avformat_free_context(ctx); }

void AvInputFormatContextDeleter::operator()(AVFormatContext* ctx) const {
  avformat_close_input(&ctx);
}

void AvioContextDeleter::operator()(AVIOContext* ctx) const {
  if (ctx == nullptr) return;
  // avio may have replaced the buffer it was given; free whatever it holds now.
  av_freep(&ctx->buffer);
  avio_context_free(&ctx);
}

void AvFrameDeleter::operator()(AVFrame* frame) const { av_frame_free(&frame); }

void AvPacketDeleter::operator()(AVPacket* packet) const { av_packet_free(&packet); }

void SwsContextDeleter::operator()(SwsContext* ctx) const { sws_freeContext(ctx); }

void QuietFfmpegLogging() { av_log_set_level(AV_LOG_WARNING); }

}  // namespace longsana::engine
