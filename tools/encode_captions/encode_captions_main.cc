// longsana-encode-captions: the caption embeddings the DiT sees for a list of prompts, computed
// by the engine's own text path (TextEncoder: the CHI prefix, the tokenizer, Gemma-2, the
// caption selection), so that the trainer of the tiny model (tools/train) conditions its DiT
// on exactly what the server will give it.
//
//   longsana-encode-captions --model DIR --prompts FILE --out FILE.safetensors
//                            [--caption_len L] [--softcap] [--threads N]
//
// FILE holds one prompt per line (empty lines are skipped). The output holds
//   embeddings [N, L, hidden] fp32, masks [N, L] int64 (1: BOS or prompt token), and
//   num_tokens [N] int64, in the order of the prompts.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/models/model_directory.h"
#include "engine/text/text_encoder.h"
#include "tools/common/safetensors_out.h"

ABSL_FLAG(std::string, model, "", "model folder (its tokenizer/ and text_encoder/)");
ABSL_FLAG(std::string, prompts, "", "text file, one prompt per line");
ABSL_FLAG(std::string, out, "", "the safetensors file to write");
ABSL_FLAG(int, caption_len, 300, "caption tokens L (the server's --caption_len)");
ABSL_FLAG(bool, softcap, false, "Gemma-2 attention soft-cap (the server's --text_softcap)");
ABSL_FLAG(int, threads, 0, "CPU threads (0: one per core)");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "longsana-encode-captions: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_model).empty() || absl::GetFlag(FLAGS_prompts).empty() ||
      absl::GetFlag(FLAGS_out).empty()) {
    return Fail("--model, --prompts and --out are required");
  }
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::ifstream in(absl::GetFlag(FLAGS_prompts));
  if (!in) return Fail("cannot read " + absl::GetFlag(FLAGS_prompts));
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) return Fail(absl::GetFlag(FLAGS_prompts) + " holds no prompt");

  auto dir = longsana::engine::ModelDirectory::Open(absl::GetFlag(FLAGS_model));
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  longsana::engine::TextEncoderOptions options;
  options.caption_len = absl::GetFlag(FLAGS_caption_len);
  options.softcap = absl::GetFlag(FLAGS_softcap);
  options.cache_max_entries = 0;  // every prompt once; nothing to reuse
  auto text = longsana::engine::TextEncoder::Load(*dir, options);
  if (!text.ok()) return Fail(std::string(text.status().message()));

  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> embeddings, masks;
  std::vector<int64_t> num_tokens;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto caption = (*text)->Encode(prompts[i]);
    if (!caption.ok()) {
      return Fail("prompt " + std::to_string(i + 1) + ": " +
                  std::string(caption.status().message()));
    }
    embeddings.push_back(caption->embedding.to(at::kCPU, at::kFloat));
    masks.push_back(caption->mask.to(at::kCPU, at::kLong));
    num_tokens.push_back(caption->num_tokens);
  }
  const at::Tensor all_embeddings = at::stack(embeddings);
  const at::Tensor all_masks = at::stack(masks);
  const at::Tensor all_tokens = at::tensor(num_tokens, at::kLong);
  const absl::Status written = longsana::tools::WriteSafetensors(
      absl::GetFlag(FLAGS_out),
      {{"embeddings", at::kFloat, all_embeddings.sizes().vec()},
       {"masks", at::kLong, all_masks.sizes().vec()},
       {"num_tokens", at::kLong, all_tokens.sizes().vec()}},
      [&](const longsana::tools::SafetensorsEntry& e) {
        return e.name == "embeddings" ? all_embeddings : e.name == "masks" ? all_masks : all_tokens;
      });
  if (!written.ok()) return Fail(std::string(written.message()));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu prompts (caption_len %lld) in %.1f s into %s\n", prompts.size(),
              static_cast<long long>(options.caption_len), seconds,
              absl::GetFlag(FLAGS_out).c_str());
  return 0;
}
