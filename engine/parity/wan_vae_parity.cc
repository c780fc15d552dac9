#include "engine/parity/wan_vae_parity.h"

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/parity/tolerances.h"

namespace longsana::engine {

absl::StatusOr<ParityReport> RunVaeParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(ModelDirectory dir, ModelDirectory::Open(options.model_dir));
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile golden, GoldenFile::Open(options.golden_path));
  VaeOptions vae_options;
  vae_options.device = options.device;
  vae_options.dtype = ScalarTypeOf(options.dtype);
  const VaeTolerances& tol = VaeTolerancesFor(options.dtype);
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<WanVaeDecoder> decoder,
                            WanVaeDecoder::Load(dir, vae_options));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor z, golden.Get("in/z"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor video_ref, golden.Get("out/video"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor clamped_ref, golden.Get("out/video_clamped"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor uint8_ref, golden.Get("out/video_uint8"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor frames_ref, golden.Get("out/num_frames"));
  if (z.dim() != 5 || z.size(0) != 1) {
    return absl::InvalidArgumentError(
        StrCat(options.golden_path, ": in/z must be [1, C, T, h, w]"));
  }
  if (decoder->device().is_cuda()) {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }

  ParityReport report;
  report.component = StrCat("vae (", ParityDtypeName(options.dtype), ")");
  try {
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<WanVaeCache> cache,
                              decoder->NewCache(z.size(3), z.size(4)));
    at::Tensor video = decoder->DecodeBlock(z, cache.get()).cpu();  // [1, 3, F, H, W]
    at::Tensor clamped = ClampVideo(video);
    // [F, H, W, 3] -> [1, F, H, W, 3] as stored in the golden
    at::Tensor frames = VideoToUint8Frames(clamped).unsqueeze(0);
    if (options.verbose) {
      LONGSANA_ASSIGN_OR_RETURN(at::Tensor z_vae_ref, golden.Get("dbg/z_vae"));
      report.Add(CompareTensors("dbg/z_vae", decoder->DenormalizeLatent(z).cpu(), z_vae_ref,
                                Tolerance::Exact()));
    }
    report.Add(CompareTensors("out/video", video, video_ref, tol.video));
    report.Add(CompareTensors("out/video_clamped", clamped, clamped_ref, tol.video));
    report.Add(CompareTensors("out/video_uint8", frames, uint8_ref, tol.uint8));
    report.Add(CompareTensors("out/num_frames", at::scalar_tensor(video.size(2), at::kLong),
                              frames_ref, Tolerance::Exact()));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("vae parity: decoding failed: ", e.what_without_backtrace()));
  }
  return report;
}

}  // namespace longsana::engine
