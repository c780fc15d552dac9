#include "engine/models/longsana_dit/dit_model.h"

#include <torch/version.h>

#include <cmath>

#include "engine/common/device_ops.h"
#include "engine/common/str_util.h"
#include "engine/loader/checkpoint.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/model_directory.h"

namespace longsana::engine {
namespace {

// RMSNorm over the last dimension: normalise in fp32, cast back, then scale (the
// reference's order: `_norm(x.float()).type_as(x) * weight`).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

// x W^T (+ b) for x [B, ..., in]. A GEMM's rounding can depend on its row count (OpenBLAS
// takes other kernels for few rows; cuBLAS picks kernels by shape), so every batch item
// runs its own GEMM with exactly the rows of a solo forward: a session's output does not
// depend on which other sessions share its batch (batch invariance, bit for bit).
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
  const int64_t batch = x.size(0), in = x.size(-1), out_features = w.size(0);
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = out_features;
  at::Tensor out = at::empty(sizes, x.options());
  const at::Tensor wt = w.t();
  for (int64_t i = 0; i < batch; ++i) {
    at::Tensor oi = out[i].view({-1, out_features});  // contiguous slice of `out`
    at::mm_out(oi, x[i].reshape({-1, in}), wt);
  }
  if (b.defined()) out.add_(b);
  return out;
}

// [B, N, H, d] -> contiguous [B, H, N, d].
at::Tensor HeadsFirst(const at::Tensor& x) { return x.transpose(1, 2).contiguous(); }

at::Tensor LayerNormNoAffine(const at::Tensor& x, double eps) {
  return at::layer_norm(x, {x.size(-1)}, /*weight=*/{}, /*bias=*/{}, eps);
}

at::Tensor GeluTanh(const at::Tensor& x) { return at::gelu(x, "tanh"); }

// Softmax attention of one item: [1, H, Nq, d] queries against [1, H, L, d] keys with an
// additive bias [1, 1, 1, L], softmax in fp32, over query chunks so the score matrix stays
// bounded (the chunk size depends only on the item's own shape).
at::Tensor ItemAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& bias, double scale) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  // Fused attention on the GPU (the `scale` argument exists since LibTorch 2.1).
  if (q.is_cuda()) {
    return at::scaled_dot_product_attention(q, k, v, bias.to(q.scalar_type()), /*dropout_p=*/0.0,
                                            /*is_causal=*/false, scale);
  }
#endif
  const int64_t h = q.size(1), n = q.size(2), l = k.size(2);
  constexpr int64_t kMaxScoreElements = int64_t{64} << 20;  // 256 MB of fp32 scores
  const int64_t chunk = std::max<int64_t>(1, kMaxScoreElements / std::max<int64_t>(1, h * l));
  at::Tensor kt = k.transpose(-1, -2);
  std::vector<at::Tensor> outs;
  for (int64_t s = 0; s < n; s += chunk) {
    at::Tensor qs = q.slice(2, s, std::min(n, s + chunk));
    at::Tensor scores = at::matmul(qs, kt).to(at::kFloat) * scale + bias.to(at::kFloat);
    at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
    outs.push_back(at::matmul(probs, v));
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 2);
}

// [B, H, Nq, d] x [B, H, L, d] -> [B, H, Nq, d], one item at a time so that kernel choices
// never depend on the batch (batch invariance, as for Linear).
at::Tensor SoftmaxAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& bias, double scale) {
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < q.size(0); ++i) {
    outs.push_back(ItemAttention(q.slice(0, i, i + 1), k.slice(0, i, i + 1), v.slice(0, i, i + 1),
                                 bias.slice(0, i, i + 1), scale));
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

}  // namespace

DitModel::DitModel(DitConfig config, DitOptions options)
    : config_(std::move(config)),
      options_(options),
      rope_(config_.attention_head_dim, config_.rope_max_seq_len, DitConfig::kRopeTheta,
            options_.device) {}

absl::StatusOr<std::unique_ptr<DitModel>> DitModel::Load(const ModelDirectory& dir,
                                                         const DitOptions& options) {
  auto ckpt = dir.OpenWeights("transformer");
  if (!ckpt.ok()) return ckpt.status();
  WeightLoadOptions load;
  load.dtype = options.dtype;
  load.device = options.device;
  auto weights = Weights::Load(DitParamSpecs(dir.transformer), **ckpt, "transformer", load);
  if (!weights.ok()) return weights.status();
  return Create(dir.transformer, *weights, options);
}

absl::StatusOr<std::unique_ptr<DitModel>> DitModel::Create(const DitConfig& config,
                                                           const Weights& w,
                                                           const DitOptions& options) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  absl::Status strict = CheckStrictTensors(DitParamSpecs(config), w.named_parameters(),
                                           "transformer");
  if (!strict.ok()) return strict;
  std::unique_ptr<DitModel> m(new DitModel(config, options));
  const int64_t d = config.hidden_size();
  auto get = [&](const std::string& name) {
    return w.Get(name).to(options.device, options.dtype).contiguous();
  };
  m->patch_w_ = get("patch_embedding.weight").reshape({d, -1});
  m->patch_b_ = get("patch_embedding.bias");
  m->t1_w_ = get("time_embed.emb.timestep_embedder.linear_1.weight");
  m->t1_b_ = get("time_embed.emb.timestep_embedder.linear_1.bias");
  m->t2_w_ = get("time_embed.emb.timestep_embedder.linear_2.weight");
  m->t2_b_ = get("time_embed.emb.timestep_embedder.linear_2.bias");
  m->t_block_w_ = get("time_embed.linear.weight");
  m->t_block_b_ = get("time_embed.linear.bias");
  m->cap1_w_ = get("caption_projection.linear_1.weight");
  m->cap1_b_ = get("caption_projection.linear_1.bias");
  m->cap2_w_ = get("caption_projection.linear_2.weight");
  m->cap2_b_ = get("caption_projection.linear_2.bias");
  m->cap_norm_ = get("caption_norm.weight");
  m->final_sst_ = get("scale_shift_table");
  m->proj_w_ = get("proj_out.weight");
  m->proj_b_ = get("proj_out.bias");
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = StrCat("transformer_blocks.", i, ".");
    Block b;
    b.scale_shift_table = get(p + "scale_shift_table");
    b.qkv_w = at::cat({get(p + "attn1.to_q.weight"), get(p + "attn1.to_k.weight"),
                       get(p + "attn1.to_v.weight")});
    b.norm_q = get(p + "attn1.norm_q.weight");
    b.norm_k = get(p + "attn1.norm_k.weight");
    b.out_w = get(p + "attn1.to_out.0.weight");
    b.out_b = get(p + "attn1.to_out.0.bias");
    b.cq_w = get(p + "attn2.to_q.weight");
    b.cq_b = get(p + "attn2.to_q.bias");
    b.ckv_w = at::cat({get(p + "attn2.to_k.weight"), get(p + "attn2.to_v.weight")});
    b.ckv_b = at::cat({get(p + "attn2.to_k.bias"), get(p + "attn2.to_v.bias")});
    b.cnorm_q = get(p + "attn2.norm_q.weight");
    b.cnorm_k = get(p + "attn2.norm_k.weight");
    b.cout_w = get(p + "attn2.to_out.0.weight");
    b.cout_b = get(p + "attn2.to_out.0.bias");
    b.inv_w = get(p + "ff.conv_inverted.weight").flatten(1);  // [2F, D, 1, 1] -> [2F, D]
    b.inv_b = get(p + "ff.conv_inverted.bias");
    b.depth_w = get(p + "ff.conv_depth.weight");
    b.depth_b = get(p + "ff.conv_depth.bias");
    b.point_w = get(p + "ff.conv_point.weight").flatten(1);  // [D, F, 1, 1] -> [D, F]
    // [D_out, D_in, 3, 1] -> [D_out, 3, D_in] -> [D_out, 3*D_in]: column k*D + c is tap k.
    b.temp_w = get(p + "ff.conv_temp.weight").squeeze(-1).permute({0, 2, 1}).reshape({d, 3 * d})
                   .contiguous();
    m->blocks_.push_back(std::move(b));
  }
  return m;
}

DitStateSpec DitModel::StateSpec(int64_t latent_h, int64_t latent_w, int num_cached_blocks,
                                 bool keep_recache_context) const {
  return DitStateSpec::For(config_, latent_h, latent_w, num_cached_blocks, options_.dtype,
                           keep_recache_context);
}

std::unique_ptr<DitSessionState> DitModel::NewState(const DitStateSpec& spec) const {
  return std::make_unique<DitSessionState>(spec, options_.device);
}

at::Tensor DitModel::TimestepEmbedding(const at::Tensor& t) const {
  // Sinusoid of the truncated timestep, fp32 (model.md §3.2): [cos(t w_j), sin(t w_j)],
  // w_j = exp(-ln(10000) j / 128), evaluated with the reference's operation order.
  const int64_t half = DitConfig::kTimestepChannels / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(t.device());
  at::Tensor freqs = at::exp(at::arange(0, half, f32) * (-std::log(10000.0)) / half);
  at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, -1).to(options_.dtype);
  return Linear(at::silu(Linear(emb, t1_w_, t1_b_)), t2_w_, t2_b_);  // [B, D]
}

at::Tensor DitModel::Forward(std::span<const DitWorkItem> items, DitTrace* trace) const {
  std::vector<DitStateCommit> commits;
  DitForwardOptions options;
  options.trace = trace;
  options.staged_commits = &commits;
  at::Tensor v = Forward(items, options);
  for (size_t i = 0; i < items.size(); ++i) items[i].state->Apply(commits[i]);
  return v;
}

at::Tensor DitModel::Forward(std::span<const DitWorkItem> items,
                             const DitForwardOptions& forward) const {
  DitTrace* const trace = forward.trace;
  const int64_t batch = static_cast<int64_t>(items.size());
  TORCH_CHECK(batch > 0, "DitModel::Forward: empty batch");
  const at::Tensor& first = items[0].latent;
  TORCH_CHECK(first.dim() == 4, "latent must be [C, F, H, W], got ", first.sizes());
  const int64_t c = first.size(0), frames = first.size(1), height = first.size(2),
                width = first.size(3);
  const int64_t ph = config_.patch_size[1], pw = config_.patch_size[2];
  TORCH_CHECK(c == config_.in_channels, "latent has ", c, " channels, the model expects ",
              config_.in_channels);
  TORCH_CHECK(height % ph == 0 && width % pw == 0, "latent ", height, "x", width,
              " is not divisible by the patch size");
  const int64_t gh = height / ph, gw = width / pw, n = frames * gh * gw;
  const int64_t caption_len = items[0].caption.size(0);
  const auto act = at::TensorOptions().dtype(options_.dtype).device(options_.device);

  std::vector<at::Tensor> latents, captions, masks, timesteps, cos_rows, sin_rows;
  // RoPE arithmetic in float64 reproduces the reference's complex128 rotation in fp32 runs;
  // bf16 runs rotate in fp32 (the reference rounds the rotated values to bf16 anyway).
  const at::ScalarType rope_dtype = options_.dtype == at::kFloat ? at::kDouble : at::kFloat;
  for (const auto& item : items) {
    TORCH_CHECK(item.latent.sizes() == first.sizes(), "batched latents must share a shape: ",
                item.latent.sizes(), " vs ", first.sizes());
    TORCH_CHECK(item.caption.dim() == 2 && item.caption.size(0) == caption_len &&
                    item.caption.size(1) == config_.caption_channels,
                "caption must be [", caption_len, ", ", config_.caption_channels, "], got ",
                item.caption.sizes());
    TORCH_CHECK(item.caption_mask.numel() == caption_len, "caption mask must have ", caption_len,
                " entries");
    TORCH_CHECK(item.state != nullptr, "work item without a session state");
    TORCH_CHECK(item.state->spec().tokens_per_frame == gh * gw,
                "session state was sized for another resolution");
    latents.push_back(device::ToDevice(item.latent, options_.device, options_.dtype));
    captions.push_back(device::ToDevice(item.caption, options_.device, options_.dtype));
    masks.push_back(
        device::ToDevice(item.caption_mask, options_.device, at::kFloat).reshape({caption_len}));
    // A fill on the device: the timestep travels as a kernel argument, not as a copy.
    timesteps.push_back(at::full({}, std::trunc(item.timestep), act.dtype(at::kFloat)));
    auto [cos, sin] = rope_.Table(item.frame_offset, frames, gh, gw);
    cos_rows.push_back(cos);
    sin_rows.push_back(sin);
  }
  // Both computed on the device (Rope3d): nothing in a forward is copied from the host.
  const at::Tensor rope_cos = at::stack(cos_rows).to(rope_dtype);  // [B, N, d/2]
  const at::Tensor rope_sin = at::stack(sin_rows).to(rope_dtype);
  if (trace) {
    (*trace)["dbg/rope_cos"] = cos_rows[0];
    (*trace)["dbg/rope_sin"] = sin_rows[0];
  }

  // Patch embedding as a linear layer over (c, i, j) patches (= Conv3d with kernel = stride).
  // [B, C, F, H, W] -> [B, C, F, gh, ph, gw, pw] -> [B, F, gh, gw, C, ph, pw] -> [B, N, C*ph*pw]
  at::Tensor x = at::stack(latents)
                     .view({batch, c, frames, gh, ph, gw, pw})
                     .permute({0, 2, 3, 5, 1, 4, 6})
                     .reshape({batch, n, c * ph * pw});
  x = Linear(x, patch_w_, patch_b_);  // [B, N, D]
  if (trace) (*trace)["dbg/patch_tokens"] = x.slice(0, 0, 1);

  const at::Tensor t = at::stack(timesteps);                       // [B]
  const at::Tensor temb = TimestepEmbedding(t);                    // [B, D]
  const at::Tensor t0 = Linear(at::silu(temb), t_block_w_, t_block_b_);  // [B, 6D]
  if (trace) {
    (*trace)["dbg/temb"] = temb.slice(0, 0, 1);
    (*trace)["dbg/t0"] = t0.slice(0, 0, 1);
  }

  // Caption: RMSNorm(fc2(gelu_tanh(fc1(E)))) -> [B, L, D]
  at::Tensor y = Linear(GeluTanh(Linear(at::stack(captions), cap1_w_, cap1_b_)), cap2_w_,
                            cap2_b_);
  if (trace) (*trace)["dbg/y_proj"] = y.slice(0, 0, 1).unsqueeze(1);
  y = RmsNorm(y, cap_norm_, DitConfig::kCaptionNormEps);
  if (trace) (*trace)["dbg/y"] = y.slice(0, 0, 1).unsqueeze(1);
  // Padded caption tokens get -10000 (model.md §3.3): [B, 1, 1, L]
  const at::Tensor mask_bias = ((1.0 - at::stack(masks)) * -10000.0).view({batch, 1, 1, caption_len});

  // Cache-pass contributions are staged per item and layer; nothing touches a state until
  // every layer has run.
  std::vector<DitStateCommit> commits(items.size());
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    x = BlockForward(l, x, y, mask_bias, t0, rope_cos, rope_sin, frames, gh, gw, items, trace,
                     commits);
    if (forward.after_layer) forward.after_layer(l);
  }

  // Final layer: shift/scale from temb (not t0, no SiLU).
  at::Tensor mod = final_sst_.unsqueeze(0) + temb.unsqueeze(1);  // [B, 2, D]
  at::Tensor shift = mod.slice(1, 0, 1), scale = mod.slice(1, 1, 2);
  x = LayerNormNoAffine(x, config_.norm_eps) * (1 + scale) + shift;
  x = Linear(x, proj_w_, proj_b_);  // [B, N, ph*pw*C_out]
  if (trace) (*trace)["dbg/final_layer_out"] = x.slice(0, 0, 1);
  // Unpatchify: [B, F, gh, gw, ph, pw, C] -> [B, C, F, gh, ph, gw, pw] -> [B, C, F, H, W]
  const int64_t co = config_.out_channels;
  at::Tensor v = x.view({batch, frames, gh, gw, ph, pw, co})
      .permute({0, 6, 1, 2, 4, 3, 5})
      .reshape({batch, co, frames, height, width})
      .to(at::kFloat);
  if (forward.staged_commits != nullptr) {
    *forward.staged_commits = std::move(commits);
  } else {
    for (size_t i = 0; i < items.size(); ++i) items[i].state->Apply(commits[i]);
  }
  return v;
}

at::Tensor DitModel::BlockForward(int64_t layer, const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& mask_bias, const at::Tensor& t0,
                                  const at::Tensor& rope_cos, const at::Tensor& rope_sin,
                                  int64_t frames, int64_t grid_h, int64_t grid_w,
                                  std::span<const DitWorkItem> items, DitTrace* trace,
                                  std::vector<DitStateCommit>& commits) const {
  const Block& b = blocks_[layer];
  const int64_t batch = x.size(0), d = x.size(2);
  // AdaLN-single: [shift, scale, gate] for attention, then for the FFN; each [B, 1, D].
  at::Tensor mod = b.scale_shift_table.unsqueeze(0) + t0.view({batch, 6, d});
  std::vector<at::Tensor> m = mod.chunk(6, 1);
  const std::string prefix = trace ? StrCat("dbg/block", layer, "/") : std::string();

  at::Tensor h = LayerNormNoAffine(x, config_.norm_eps) * (1 + m[1]) + m[0];
  auto [attn, s_own, z_own] = SelfAttention(layer, h, rope_cos, rope_sin, items);
  if (trace) (*trace)[prefix + "self_attn_out"] = attn.slice(0, 0, 1);
  at::Tensor out = x + m[2] * attn;

  at::Tensor cross = CrossAttention(b, out, y, mask_bias);
  if (trace) (*trace)[prefix + "cross_attn_out"] = cross.slice(0, 0, 1);
  out = out + cross;

  h = LayerNormNoAffine(out, config_.norm_eps) * (1 + m[4]) + m[3];
  auto [ffn, conv_own] = FeedForward(layer, h, frames, grid_h, grid_w, items);
  if (trace) (*trace)[prefix + "ffn_out"] = ffn.slice(0, 0, 1);
  out = out + m[5] * ffn;
  if (trace) (*trace)[prefix + "out"] = out.slice(0, 0, 1);

  // Cache pass: the block's own contributions (model.md §4.2, §5), staged. The conv frame
  // is copied out so the staged commit does not keep this layer's whole FFN output alive.
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].commit_state) {
      commits[i].layers.push_back(
          DitLayerContribution{s_own[i].clone(), z_own[i].clone(), conv_own[i].clone()});
    }
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> DitModel::SelfAttention(int64_t layer, const at::Tensor& h, const at::Tensor& rope_cos,
                                   const at::Tensor& rope_sin,
                                   std::span<const DitWorkItem> items) const {
  const Block& b = blocks_[layer];
  const int64_t batch = h.size(0), n = h.size(1), d = h.size(2);
  const int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;
  std::vector<at::Tensor> qkv = Linear(h, b.qkv_w).chunk(3, -1);  // 3 x [B, N, D]
  // φ = ReLU after the across-heads RMSNorm (eps 1e-5); v is not normalised.
  at::Tensor q = at::relu(RmsNorm(qkv[0], b.norm_q, DitConfig::kSelfAttnNormEps))
                     .view({batch, n, heads, hd});
  at::Tensor k = at::relu(RmsNorm(qkv[1], b.norm_k, DitConfig::kSelfAttnNormEps))
                     .view({batch, n, heads, hd});
  at::Tensor v = qkv[2].view({batch, n, heads, hd});

  // fp32 from here on (fp32_attention): [B, N, H, d] -> [B, H, N, d], contiguous. The
  // layout is canonical on purpose: BLAS picks its kernel from the operands' strides, and a
  // strided view that is viewable for one batch size but copied for another would round
  // differently (batch invariance).
  at::Tensor q_rot = HeadsFirst(ApplyRope(q, rope_cos, rope_sin).to(at::kFloat));
  at::Tensor k_rot = HeadsFirst(ApplyRope(k, rope_cos, rope_sin).to(at::kFloat));
  at::Tensor qf = HeadsFirst(q.to(at::kFloat));
  at::Tensor kf = HeadsFirst(k.to(at::kFloat));
  at::Tensor vf = HeadsFirst(v.to(at::kFloat));

  // This block's own sums: S = Σ v k̃ᵀ [B, H, d_v, d_k]; z = Σ φ(k) (un-rotated) [B, H, d].
  at::Tensor s_own = at::matmul(vf.transpose(-1, -2), k_rot);
  at::Tensor z_own = kf.sum(2);
  std::vector<at::Tensor> s_prev, z_prev;
  for (const auto& item : items) {
    s_prev.push_back(item.state->ContextS(layer));
    z_prev.push_back(item.state->ContextZ(layer));
  }
  at::Tensor s = s_own + at::stack(s_prev);
  at::Tensor z = z_own + at::stack(z_prev);
  // Reciprocal then multiply (binding decision 3), in fp32.
  at::Tensor num = at::matmul(q_rot, s.transpose(-1, -2));        // [B, H, N, d]
  at::Tensor den = at::matmul(qf, z.unsqueeze(-1));               // [B, H, N, 1]
  at::Tensor o = num * at::reciprocal(den + DitConfig::kLinearAttnEps);
  o = o.transpose(1, 2).reshape({batch, n, d}).to(h.scalar_type());
  return {Linear(o, b.out_w, b.out_b), s_own, z_own};
}

at::Tensor DitModel::CrossAttention(const Block& b, const at::Tensor& x, const at::Tensor& y,
                                    const at::Tensor& mask_bias) const {
  const int64_t batch = x.size(0), n = x.size(1), l = y.size(1);
  const int64_t heads = config_.num_cross_attention_heads, hd = config_.cross_attention_head_dim;
  at::Tensor q = RmsNorm(Linear(x, b.cq_w, b.cq_b), b.cnorm_q, DitConfig::kCrossAttnNormEps);
  std::vector<at::Tensor> kv = Linear(y, b.ckv_w, b.ckv_b).chunk(2, -1);
  at::Tensor k = RmsNorm(kv[0], b.cnorm_k, DitConfig::kCrossAttnNormEps);
  // [B, N, D] -> [B, H, N, d]; [B, L, D] -> [B, H, L, d], contiguous (see SelfAttention)
  at::Tensor qh = HeadsFirst(q.view({batch, n, heads, hd}));
  at::Tensor kh = HeadsFirst(k.view({batch, l, heads, hd}));
  at::Tensor vh = HeadsFirst(kv[1].view({batch, l, heads, hd}));
  at::Tensor o = SoftmaxAttention(qh, kh, vh, mask_bias, 1.0 / std::sqrt(static_cast<double>(hd)));
  o = o.transpose(1, 2).reshape({batch, n, heads * hd});
  return Linear(o, b.cout_w, b.cout_b);
}

std::pair<at::Tensor, at::Tensor> DitModel::FeedForward(int64_t layer, const at::Tensor& h,
                                                        int64_t frames, int64_t grid_h,
                                                        int64_t grid_w,
                                                        std::span<const DitWorkItem> items) const {
  const Block& b = blocks_[layer];
  const int64_t batch = h.size(0), n = h.size(1), d = h.size(2), hw = grid_h * grid_w;
  const int64_t glu = b.point_w.size(1);  // F (the GLU halves of the 2F expansion)
  // 1x1 inverted conv + SiLU, in token layout: [B, N, 2F]
  at::Tensor u = at::silu(Linear(h, b.inv_w, b.inv_b));
  // Depthwise 3x3 per frame. [B, N, 2F] = [B*F, gh, gw, 2F] viewed as NCHW with
  // channels-last strides, so cuDNN/oneDNN read it without a transpose.
  at::Tensor u4 = u.view({batch * frames, grid_h, grid_w, 2 * glu}).permute({0, 3, 1, 2});
  u4 = at::conv2d(u4, b.depth_w, b.depth_b, /*stride=*/1, /*padding=*/1, /*dilation=*/1,
                  /*groups=*/2 * glu);
  // back to token layout [B*F, gh, gw, 2F] -> [B, N, 2F]
  u = u4.permute({0, 2, 3, 1}).reshape({batch, n, 2 * glu});
  at::Tensor p = u.slice(-1, 0, glu) * at::silu(u.slice(-1, glu, 2 * glu));
  at::Tensor big_p = Linear(p, b.point_w).view({batch, frames, hw, d});  // P [B, F, hw, D]

  // Temporal conv with residual: out_t = P_t + W0 P_{t-1} + W1 P_t + W2 P_{t+1}, with
  // P_{-1} = the previous block's cached last frame and P_F = 0 (model.md §5).
  std::vector<at::Tensor> prev;
  for (const auto& item : items) prev.push_back(item.state->ContextConv(layer));
  at::Tensor left = at::stack(prev).to(big_p.scalar_type()).unsqueeze(1);  // [B, 1, hw, D]
  at::Tensor padded = at::cat({left, big_p, at::zeros_like(left)}, 1);     // [B, F+2, hw, D]
  at::Tensor taps = at::cat({padded.slice(1, 0, frames), big_p, padded.slice(1, 2, frames + 2)},
                            -1);                                           // [B, F, hw, 3D]
  at::Tensor out = big_p + Linear(taps, b.temp_w);
  return {out.view({batch, n, d}), big_p.select(1, frames - 1)};  // [B, N, D], [B, hw, D]
}

}  // namespace longsana::engine
