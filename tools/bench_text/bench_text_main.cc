// longsana-bench-text: times the text-conditioning path with random Gemma-2 weights (no
// checkpoint needed): prompt building, the Gemma forward over the full CHI + prompt sequence,
// and TextEncoder::Encode on a cache miss and a cache hit. Prints a table.
//
//   longsana-bench-text [--config PATH] [--tokenizer DIR] [--device cpu|cuda]
//                       [--layers N] [--vocab N] [--caption_len L] [--batch B]
//                       [--iters N] [--warmup N] [--threads N] [--softcap]
// --layers / --vocab shrink the config (e.g. a real-width model with fewer layers on CPU).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/models/gemma2/gemma2_config.h"
#include "engine/models/gemma2/gemma2_model.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/text/prompt.h"
#include "engine/text/text_encoder.h"
#include "engine/text/tokenizer.h"
#include "fmt/format.h"

namespace longsana::engine {
namespace {

constexpr std::string_view kPrompt =
    "A red fox trots along a frosty forest path at dawn, its breath visible in the cold air, "
    "while golden sunlight filters through tall pine trees and the camera slowly tracks "
    "alongside it";

struct Args {
  std::string config = "tests/testdata/longsana-2b-configs/text_encoder/config.json";
  std::string tokenizer = "tests/testdata/tiny-longsana/tokenizer";
  std::string device;
  int64_t layers = 0;
  int64_t vocab = 0;
  int64_t caption_len = 300;
  int64_t batch = 1;
  int iters = 5;
  int warmup = 1;
  int threads = 0;
  bool softcap = false;
};

[[noreturn]] void Usage(const char* message) {
  std::fprintf(stderr, "longsana-bench-text: %s\n", message);
  std::exit(2);
}

int64_t ParseInt(const std::string& flag, const std::string& text) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end) Usage(("bad integer for " + flag + ": " + text).c_str());
  return v;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  using Setter = std::function<void(const std::string& flag, const std::string& value)>;
  const std::map<std::string, Setter> flags = {
      {"--config", [&](auto&, auto& v) { a.config = v; }},
      {"--tokenizer", [&](auto&, auto& v) { a.tokenizer = v; }},
      {"--device", [&](auto&, auto& v) { a.device = v; }},
      {"--layers", [&](auto& f, auto& v) { a.layers = ParseInt(f, v); }},
      {"--vocab", [&](auto& f, auto& v) { a.vocab = ParseInt(f, v); }},
      {"--caption_len", [&](auto& f, auto& v) { a.caption_len = ParseInt(f, v); }},
      {"--batch", [&](auto& f, auto& v) { a.batch = ParseInt(f, v); }},
      {"--iters", [&](auto& f, auto& v) { a.iters = static_cast<int>(ParseInt(f, v)); }},
      {"--warmup", [&](auto& f, auto& v) { a.warmup = static_cast<int>(ParseInt(f, v)); }},
      {"--threads", [&](auto& f, auto& v) { a.threads = static_cast<int>(ParseInt(f, v)); }},
  };
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--softcap") {
      a.softcap = true;
      continue;
    }
    auto it = flags.find(flag);
    if (it == flags.end()) Usage(("unknown flag " + flag).c_str());
    if (i + 1 >= argc) Usage(("missing value for " + flag).c_str());
    it->second(flag, argv[++i]);
  }
  if (a.device.empty()) a.device = at::hasCUDA() ? "cuda" : "cpu";
  if (a.device != "cpu" && a.device.rfind("cuda", 0) != 0) Usage("--device must be cpu or cuda");
  if (a.device != "cpu" && !at::hasCUDA()) Usage("--device cuda: no CUDA device");
  if (a.iters < 1 || a.batch < 1 || a.warmup < 0) {
    Usage("--iters and --batch must be positive, --warmup non-negative");
  }
  return a;
}

struct Timing {
  double mean_ms = 0, min_ms = 0, max_ms = 0;
};

Timing Measure(int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  Timing t;
  for (double v : ms) t.mean_ms += v / ms.size();
  t.min_ms = *std::min_element(ms.begin(), ms.end());
  t.max_ms = *std::max_element(ms.begin(), ms.end());
  return t;
}

int Main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  if (args.threads > 0) at::set_num_threads(args.threads);
  auto config_or = Gemma2Config::FromFile(args.config);
  if (!config_or.ok()) Usage(std::string(config_or.status().message()).c_str());
  Gemma2Config config = *config_or;
  if (args.layers > 0) config.num_hidden_layers = args.layers;
  if (args.vocab > 0) config.vocab_size = args.vocab;
  if (absl::Status s = config.Validate(); !s.ok()) Usage(std::string(s.message()).c_str());

  auto tok_config = TokenizerConfig::FromDirectory(args.tokenizer);
  if (!tok_config.ok()) Usage(std::string(tok_config.status().message()).c_str());
  auto tokenizer = Tokenizer::Load(args.tokenizer, *tok_config);
  if (!tokenizer.ok()) Usage(std::string(tokenizer.status().message()).c_str());

  Gemma2Options options;
  options.device = at::Device(args.device);
  options.softcap = args.softcap;
  const at::ScalarType dtype = options.ResolvedDtype();
  // Random weights straight on the device in the compute dtype (no host copy of 2.6 B
  // parameters). Values ~N(0, 0.02) like an initialised model; norms near 1 + 0.
  const auto t_alloc = std::chrono::steady_clock::now();
  Gemma2Parameters params;
  at::manual_seed(0);
  const auto opts = at::TensorOptions().dtype(dtype).device(options.device);
  for (const ParamSpec& spec : Gemma2ParamSpecs(config)) {
    params[spec.name] = at::randn(spec.shape, opts).mul_(0.02);
  }
  auto encoder = Gemma2Encoder::FromParameters(config, std::move(params), options);
  if (!encoder.ok()) Usage(std::string(encoder.status().message()).c_str());
  const double alloc_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_alloc).count();
  const Gemma2Encoder& gemma = **encoder;

  const std::string cleaned = CleanPrompt(kPrompt);
  auto tokens = BuildPromptTokens(**tokenizer, cleaned, args.caption_len);
  if (!tokens.ok()) Usage(std::string(tokens.status().message()).c_str());
  const int64_t s = tokens->max_len_all;
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  // [S] -> [1, S] -> [B, S]
  at::Tensor ids = at::from_blob(tokens->full_ids.data(), {1, s}, cpu_long)
                       .expand({args.batch, s})
                       .contiguous()
                       .to(options.device);
  at::Tensor mask = at::from_blob(tokens->full_mask.data(), {1, s}, cpu_long)
                        .expand({args.batch, s})
                        .contiguous()
                        .to(options.device);

  const std::string model =
      fmt::format("gemma2 h{} L{} heads{}/{}x{} mlp{} vocab{}", config.hidden_size,
                  config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
                  config.head_dim, config.intermediate_size, config.vocab_size);
  std::printf(
      "longsana-bench-text: %s, %.3f B params (%.2f GB %s) on %s, %d threads, "
      "random weights built in %.1f s\n",
      model.c_str(), gemma.num_params() / 1e9, gemma.num_bytes() / 1e9, c10::toString(dtype),
      options.device.str().c_str(), at::get_num_threads(), alloc_s);
  std::printf(
      "prompt: n_chi = %lld (incl. BOS), CHI + prompt = %lld ids (caption keeps %lld), "
      "padded to S = max_len_all = %lld, caption L = %lld, soft-cap %s\n\n",
      static_cast<long long>(tokens->n_chi), static_cast<long long>(tokens->num_tokens),
      static_cast<long long>(tokens->caption_tokens()), static_cast<long long>(s),
      static_cast<long long>(args.caption_len), args.softcap ? "on" : "off");

  struct Row {
    std::string stage;
    int64_t batch;
    Timing t;
  };
  std::vector<Row> rows;
  rows.push_back({"tokenize + build prompt tokens", 1, Measure(args.warmup, args.iters * 10, [&] {
                    auto t = BuildPromptTokens(**tokenizer, cleaned, args.caption_len);
                    if (!t.ok()) std::abort();
                  })});
  rows.push_back(
      {"gemma2 forward (full CHI+prompt)", args.batch, Measure(args.warmup, args.iters, [&] {
         at::Tensor h = gemma.Forward(ids, mask);
         (void)h.sum().item<float>();  // synchronises a CUDA stream
       })});

  // The facade on the same encoder: a miss (tokenise + forward + select) and a hit.
  auto tok2 = Tokenizer::Load(args.tokenizer, *tok_config);
  TextEncoderOptions te_options;
  te_options.caption_len = args.caption_len;
  auto text = TextEncoder::Create(std::move(*tok2), std::move(*encoder), te_options);
  if (!text.ok()) Usage(std::string(text.status().message()).c_str());
  rows.push_back({"TextEncoder::Encode, cache miss", 1, Measure(args.warmup, args.iters, [&] {
                    (*text)->ClearCache();
                    auto c = (*text)->Encode(kPrompt);
                    if (!c.ok()) std::abort();
                    (void)c->embedding.sum().item<float>();
                  })});
  rows.push_back({"TextEncoder::Encode, cache hit", 1, Measure(args.warmup, args.iters * 100, [&] {
                    auto c = (*text)->Encode(kPrompt);
                    if (!c.ok()) std::abort();
                  })});

  std::printf("| %-34s | %-6s | %-8s | %5s | %5s | %10s | %10s | %10s |\n", "stage", "device",
              "dtype", "S", "batch", "mean ms", "min ms", "max ms");
  std::printf(
      "|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(8, '-').c_str(),
      std::string(10, '-').c_str(), std::string(7, '-').c_str(), std::string(7, '-').c_str(),
      std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(12, '-').c_str());
  for (const Row& r : rows) {
    std::printf("| %-34s | %-6s | %-8s | %5lld | %5lld | %10.3f | %10.3f | %10.3f |\n",
                r.stage.c_str(), options.device.str().c_str(), c10::toString(dtype),
                static_cast<long long>(s), static_cast<long long>(r.batch), r.t.mean_ms, r.t.min_ms,
                r.t.max_ms);
  }
  // For scripts/gpu/check.sh's summary table: the encode a new prompt costs.
  std::printf(
      "SUMMARY | Gemma-2 encode, %s, %s on %s, %lld tokens | %.1f ms per prompt (cache miss) "
      "| %.3f ms cache hit | |\n",
      model.c_str(), c10::toString(dtype), options.device.str().c_str(), static_cast<long long>(s),
      rows[2].t.mean_ms, rows[3].t.mean_ms);
  return 0;
}

}  // namespace
}  // namespace longsana::engine

int main(int argc, char** argv) { return longsana::engine::Main(argc, argv); }
