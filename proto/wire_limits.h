// Message-size constants shared by the server and the CLI (plain C++, no protobuf include, so
// both sides of the wire can use them without a layering exception).
//
// A video chunk travels as one GenerateEvent{chunk: VideoChunk{..., data}} message. The
// engine bounds `data` (SessionPolicy::max_chunk_bytes, --max-chunk-bytes); the protobuf
// framing around it (field tags, length varints, sequence/frame numbers, the two doubles and
// the mime type, about 100 bytes) must fit in a margin on top of that, so that the server's
// max send message size and the CLI's max receive message size are
// max_chunk_bytes + kChunkFramingMarginBytes.
#pragma once

#include <cstdint>

namespace longsana::wire {

// Generous on purpose: far above the ~100 bytes of framing, far below any chunk.
inline constexpr int64_t kChunkFramingMarginBytes = 64 << 10;

// The engine's default SessionPolicy::max_chunk_bytes, for the CLI (which may not include
// engine/api). tests/server/wire_limits_test.cc checks that the two agree.
inline constexpr int64_t kDefaultMaxChunkBytes = 16 << 20;

// What a client should accept by default: the largest message a default server sends.
inline constexpr int64_t kDefaultMaxReceiveBytes = kDefaultMaxChunkBytes + kChunkFramingMarginBytes;

}  // namespace longsana::wire
