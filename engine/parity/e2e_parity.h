// End-to-end parity (GOLDENS.md §2.8): prompt -> tokenizer -> Gemma-2 -> caption selection
// -> LongLive sampler -> streaming Wan VAE decode -> uint8 frames, through the same
// component APIs the engine's runner calls (TextEncoder::Encode, SamplerSession,
// WanVaeDecoder::DecodeBlock per finished block, VideoToUint8Frames).
//
// The e2e golden holds no noise: its sampler draws are those of the sibling
// `sampler.safetensors` of the same set (same seed), and its prompt is prompt 0 of the
// sibling `tokenizer.json` sidecar unless ParityOptions::prompt is set. The reference made
// it with the Gemma soft-cap on and exact timesteps: run with softcap=true,
// timesteps=kExact (`longsana-parity e2e --softcap --timesteps exact`).
#pragma once

#include "absl/status/statusor.h"
#include "engine/parity/golden.h"
#include "engine/parity/parity_options.h"

namespace longsana::engine {

absl::StatusOr<ParityReport> RunE2eParity(const ParityOptions& options);

}  // namespace longsana::engine
