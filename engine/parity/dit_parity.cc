#include "engine/parity/dit_parity.h"

#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/model_directory.h"
#include "engine/parity/recorded_noise.h"
#include "engine/parity/tolerances.h"
#include "engine/sampler/longlive_sampler.h"

namespace longsana::engine {
namespace {

struct Loaded {
  ModelDirectory dir;
  std::unique_ptr<DitModel> model;
  GoldenFile golden;
  DitTolerances tol;
};

absl::StatusOr<Loaded> LoadAll(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(ModelDirectory dir, ModelDirectory::Open(options.model_dir));
  DitOptions dit;
  dit.device = at::Device(options.device);
  dit.dtype = ScalarTypeOf(options.dtype);
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<DitModel> model, DitModel::Load(dir, dit));
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile golden, GoldenFile::Open(options.golden_path));
  return Loaded{std::move(dir), std::move(model), std::move(golden),
                DitTolerancesFor(options.dtype)};
}

// A work item from golden inputs: x [1, C, F, H, W], timestep [1], caption [1, 1, L, Cc],
// mask [1, L], frame_range [2].
absl::StatusOr<DitWorkItem> ItemFromGolden(const GoldenFile& g, const std::string& x_name,
                                           const std::string& t_name,
                                           const std::string& range_name) {
  DitWorkItem item;
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor x, g.Get(x_name));
  item.latent = x.squeeze(0);
  if (!t_name.empty()) {
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor t, g.Get(t_name));
    item.timestep = t.to(at::kDouble).item<double>();
  }
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor range, g.Get(range_name));
  item.frame_offset = range[0].item<int64_t>();
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor caption, g.Get("in/caption"));
  item.caption = caption.reshape({caption.size(-2), caption.size(-1)});
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor mask, g.Get("in/mask"));
  item.caption_mask = mask.reshape({-1});
  return item;
}

// Golden layouts of one layer's state: S [1, H, d, d], z [1, H, 1, d], conv [1, D, 1, hw].
at::Tensor AsGoldenS(const at::Tensor& s) { return s.unsqueeze(0); }
at::Tensor AsGoldenZ(const at::Tensor& z) { return z.unsqueeze(0).unsqueeze(2); }
at::Tensor AsGoldenConv(const at::Tensor& conv) {  // [hw, D] -> [1, D, 1, hw]
  return conv.transpose(0, 1).unsqueeze(0).unsqueeze(2);
}

void CompareIfPresent(ParityReport* report, const GoldenFile& g, const std::string& name,
                      const at::Tensor& actual, const Tolerance& tol) {
  auto expected = g.Get(name);
  if (!expected.ok()) return;
  report->Add(CompareTensors(name, actual, *expected, tol));
}

}  // namespace

int64_t BaseBlockFrames(const at::Tensor& segments) {
  const at::Tensor seg = segments.to(at::kLong).contiguous();
  const int64_t n = seg.numel();
  return n >= 3 ? seg[n - 1].item<int64_t>() - seg[n - 2].item<int64_t>()
                : seg[n - 1].item<int64_t>();
}

absl::StatusOr<ParityReport> RunDitForwardParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(Loaded l, LoadAll(options));
  LONGSANA_ASSIGN_OR_RETURN(DitWorkItem item,
                            ItemFromGolden(l.golden, "in/x", "in/timestep", "in/frame_range"));
  auto state = l.model->NewState(
      l.model->StateSpec(item.latent.size(2), item.latent.size(3), /*num_cached_blocks=*/-1));
  item.state = state.get();
  DitTrace trace;
  at::Tensor v;
  try {
    v = l.model->Forward({&item, 1}, options.verbose ? &trace : nullptr);
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("dit-forward: ", e.what_without_backtrace()));
  }
  ParityReport report{StrCat("dit-forward (", ParityDtypeName(options.dtype), ")"), {}};
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, l.golden.Get("out/v"));
  report.Add(CompareTensors("out/v", v, expected, l.tol.velocity));
  for (const auto& [name, tensor] : trace) {
    const bool rope = name.starts_with("dbg/rope_");
    CompareIfPresent(&report, l.golden, name, tensor, rope ? RopeTableTolerance() : l.tol.velocity);
  }
  return report;
}

absl::StatusOr<ParityReport> RunDitStateParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(Loaded l, LoadAll(options));
  LONGSANA_ASSIGN_OR_RETURN(DitWorkItem cache,
                            ItemFromGolden(l.golden, "cache_pass/x", "", "cache_pass/frame_range"));
  auto state = l.model->NewState(
      l.model->StateSpec(cache.latent.size(2), cache.latent.size(3), /*num_cached_blocks=*/-1));
  cache.state = state.get();
  cache.timestep = 0.0;
  cache.commit_state = true;
  ParityReport report{StrCat("dit-state (", ParityDtypeName(options.dtype), ")"), {}};
  try {
    at::Tensor v = l.model->Forward({&cache, 1});
    CompareIfPresent(&report, l.golden, "cache_pass/v", v, l.tol.velocity);
    for (int64_t layer = 0; layer < l.model->config().num_layers; ++layer) {
      const std::string p = StrCat("state/layer", layer, "/");
      CompareIfPresent(&report, l.golden, p + "S", AsGoldenS(state->ContextS(layer)),
                       l.tol.state_sum);
      CompareIfPresent(&report, l.golden, p + "z", AsGoldenZ(state->ContextZ(layer)),
                       l.tol.state_sum);
      CompareIfPresent(&report, l.golden, p + "conv", AsGoldenConv(state->ContextConv(layer)),
                       l.tol.state_conv);
    }
    LONGSANA_ASSIGN_OR_RETURN(
        DitWorkItem next, ItemFromGolden(l.golden, "next/x", "next/timestep", "next/frame_range"));
    next.state = state.get();
    at::Tensor next_v = l.model->Forward({&next, 1});
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, l.golden.Get("next/v"));
    report.Add(CompareTensors("next/v", next_v, expected, l.tol.velocity));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("dit-state: ", e.what_without_backtrace()));
  }
  return report;
}

absl::StatusOr<ParityReport> RunSamplerParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(Loaded l, LoadAll(options));
  const GoldenFile& g = l.golden;
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor noise_init, g.Get("in/noise_init"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor segments, g.Get("in/segments"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor timesteps, g.Get("in/timesteps"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor caption, g.Get("in/caption"));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor mask, g.Get("in/mask"));
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<RecordedNoise> noise, RecordedNoise::FromGolden(g));

  SamplerOptions so;
  so.timestep_mode = options.timesteps;
  so.timesteps.clear();
  at::Tensor ts = timesteps.to(at::kDouble).contiguous();
  for (int64_t i = 0; i < ts.numel(); ++i) so.timesteps.push_back(ts[i].item<double>());
  so.block_frames = BaseBlockFrames(segments);
  const at::Tensor seg = segments.to(at::kLong);
  const int64_t latent_frames = noise_init.size(2);
  const int64_t lh = noise_init.size(3), lw = noise_init.size(4);

  ParityReport report{StrCat("sampler (", ParityDtypeName(options.dtype), ")"), {}};
  try {
    SamplerSession session(*l.model, so, latent_frames, lh, lw,
                           caption.reshape({caption.size(-2), caption.size(-1)}),
                           mask.reshape({-1}), std::move(noise));
    std::vector<int64_t> bounds = session.boundaries();
    report.Add(
        CompareTensors("in/segments", at::tensor(bounds, at::kLong), seg, Tolerance::Exact()));
    std::vector<float> sx0, sre;
    for (size_t k = 0; k < so.timesteps.size(); ++k) sx0.push_back(session.SigmaX0(k));
    for (size_t k = 0; k + 1 < so.timesteps.size(); ++k) sre.push_back(session.SigmaRenoise(k));
    CompareIfPresent(&report, g, "in/sigma_x0", at::tensor(sx0), Tolerance::Exact());
    CompareIfPresent(&report, g, "in/sigma_renoise", at::tensor(sre), Tolerance::Exact());

    if (options.verbose) {
      const DitConfig& cfg = l.model->config();
      session.set_observer([&](const ForwardRecord& r) {
        const std::string p = r.step < 0 ? StrCat("dbg/c", r.block, "/cache/")
                                         : StrCat("dbg/c", r.block, "/s", r.step, "/");
        CompareIfPresent(&report, g, p + "t_model", at::tensor({static_cast<float>(r.t_model)}),
                         Tolerance::Exact());
        CompareIfPresent(&report, g, p + "x_in", r.x_in.unsqueeze(0), l.tol.sampler);
        CompareIfPresent(&report, g, p + "v", r.v.unsqueeze(0), l.tol.sampler);
        if (r.step >= 0) CompareIfPresent(&report, g, p + "x0", r.x0.unsqueeze(0), l.tol.sampler);
        for (int64_t layer = 0; layer < cfg.num_layers; ++layer) {
          if (r.step == 0 && r.block >= 1) {
            // What block j read: the context before its own commit.
            const std::string q = StrCat("dbg/c", r.block, "/state_in/layer", layer, "/");
            CompareIfPresent(&report, g, q + "S", AsGoldenS(r.state->ContextS(layer)),
                             l.tol.state_sum);
            CompareIfPresent(&report, g, q + "z", AsGoldenZ(r.state->ContextZ(layer)),
                             l.tol.state_sum);
            CompareIfPresent(&report, g, q + "conv", AsGoldenConv(r.state->ContextConv(layer)),
                             l.tol.state_conv);
          }
          if (r.step < 0) {
            const std::string q = StrCat("dbg/c", r.block, "/state_own/layer", layer, "/");
            CompareIfPresent(&report, g, q + "S", AsGoldenS(r.state->LastS(layer)),
                             l.tol.state_sum);
            CompareIfPresent(&report, g, q + "z", AsGoldenZ(r.state->LastZ(layer)),
                             l.tol.state_sum);
            CompareIfPresent(&report, g, q + "conv", AsGoldenConv(r.state->ContextConv(layer)),
                             l.tol.state_conv);
          }
        }
      });
    }
    at::Tensor latent = GenerateLatents(*l.model, session).unsqueeze(0);
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, g.Get("out/latent"));
    report.Add(CompareTensors("out/latent", latent, expected, l.tol.sampler));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("sampler: ", e.what_without_backtrace()));
  }
  return report;
}

}  // namespace longsana::engine
