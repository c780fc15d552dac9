#include "engine/parity/e2e_parity.h"

#include <filesystem>

#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/parity/dit_parity.h"
#include "engine/parity/recorded_noise.h"
#include "engine/parity/tolerances.h"
#include "engine/sampler/longlive_sampler.h"
#include "engine/text/prompt.h"
#include "engine/text/text_encoder.h"

namespace longsana::engine {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMotionSuffix = " motion score: 10.";

absl::StatusOr<std::string> PromptFromSidecar(const std::string& golden_path) {
  const fs::path sidecar = fs::path(golden_path).parent_path() / "tokenizer.json";
  auto json = ReadJsonObjectFile(sidecar.string());
  if (!json.ok()) {
    return absl::InvalidArgumentError(StrCat("e2e: no prompt given and ", sidecar.string(),
                                             " is unreadable (", json.status().message(), ")"));
  }
  try {
    std::string cleaned = json->at("notes").at("info").at("prompts").at(0).get<std::string>();
    if (std::string_view(cleaned).ends_with(kMotionSuffix)) {
      cleaned.resize(cleaned.size() - kMotionSuffix.size());
    }
    return cleaned;
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError(
        StrCat("e2e: ", sidecar.string(), " lacks notes.info.prompts[0]; pass the prompt"));
  }
}

}  // namespace

absl::StatusOr<ParityReport> RunE2eParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile e2e, GoldenFile::Open(options.golden_path));
  const std::string sampler_path =
      (fs::path(options.golden_path).parent_path() / "sampler.safetensors").string();
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile sampler_golden, GoldenFile::Open(sampler_path));
  std::string prompt = options.prompt;
  if (prompt.empty()) {
    LONGSANA_ASSIGN_OR_RETURN(prompt, PromptFromSidecar(options.golden_path));
  }
  LONGSANA_ASSIGN_OR_RETURN(ModelDirectory dir, ModelDirectory::Open(options.model_dir));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_caption, e2e.Get("caption"));  // [1, 1, L, C]
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_ids, e2e.Get("prompt_ids"));   // [1, max_len_all]
  const at::Device device(options.device);
  const at::ScalarType dtype = ScalarTypeOf(options.dtype);
  const E2eTolerances& tol = E2eTolerancesFor(options.dtype);

  ParityReport report{StrCat("e2e (", ParityDtypeName(options.dtype), ")"), {}};
  try {
    // Text: the engine's TextEncoder, with the golden's caption length.
    TextEncoderOptions text_options;
    text_options.device = device;
    text_options.dtype = dtype;
    text_options.softcap = options.softcap;
    text_options.caption_len = golden_caption.size(2);
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<TextEncoder> text,
                              TextEncoder::Load(dir, text_options));
    LONGSANA_ASSIGN_OR_RETURN(
        PromptTokens tokens,
        BuildPromptTokens(text->tokenizer(), CleanPrompt(prompt), text_options.caption_len));
    report.Add(CompareTensors("prompt_ids", at::tensor(tokens.full_ids, at::kLong).unsqueeze(0),
                              golden_ids, Tolerance::Exact()));
    LONGSANA_ASSIGN_OR_RETURN(Caption caption, text->Encode(prompt));
    report.Add(CompareTensors("caption", caption.embedding.view(golden_caption.sizes()),
                              golden_caption, tol.caption));
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_mask, e2e.Get("caption_mask"));
    report.Add(
        CompareTensors("caption_mask", caption.mask.unsqueeze(0), golden_mask, Tolerance::Exact()));

    // Sampler, with the draws recorded for this set.
    DitOptions dit_options;
    dit_options.device = device;
    dit_options.dtype = dtype;
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<DitModel> dit, DitModel::Load(dir, dit_options));
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor segments, sampler_golden.Get("in/segments"));
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor noise_init, sampler_golden.Get("in/noise_init"));
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<RecordedNoise> noise,
                              RecordedNoise::FromGolden(sampler_golden));
    SamplerOptions so;
    so.timestep_mode = options.timesteps;
    so.block_frames = BaseBlockFrames(segments);
    const int64_t lh = noise_init.size(3), lw = noise_init.size(4);
    SamplerSession session(*dit, so, noise_init.size(2), lh, lw, caption.embedding, caption.mask,
                           std::move(noise));

    // VAE: each block decoded as soon as the sampler finishes it, as the engine streams.
    VaeOptions vae_options;
    vae_options.device = options.device;
    vae_options.dtype = dtype;
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<WanVaeDecoder> vae,
                              WanVaeDecoder::Load(dir, vae_options));
    LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<WanVaeCache> cache, vae->NewCache(lh, lw));
    std::vector<at::Tensor> latents, videos;
    SamplerSession* one[] = {&session};
    while (!session.done()) {
      RunSamplerStep(*dit, one);
      if (auto block = session.TakeFinishedBlock()) {
        latents.push_back(*block);
        videos.push_back(vae->DecodeBlock(block->unsqueeze(0), cache.get()));
      }
    }
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_latent, e2e.Get("latent"));
    report.Add(
        CompareTensors("latent", at::cat(latents, 1).unsqueeze(0), golden_latent, tol.latent));
    at::Tensor video = at::cat(videos, 2);  // [1, 3, F, H, W]
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_video, e2e.Get("video"));
    report.Add(CompareTensors("video", video, golden_video, tol.video));
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor golden_uint8, e2e.Get("video_uint8"));
    report.Add(CompareTensors("video_uint8", VideoToUint8Frames(video).unsqueeze(0), golden_uint8,
                              tol.video_uint8));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("e2e: ", e.what_without_backtrace()));
  }
  return report;
}

}  // namespace longsana::engine
