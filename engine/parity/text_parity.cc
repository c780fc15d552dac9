#include "engine/parity/text_parity.h"

#include <filesystem>

#include "engine/common/json_fields.h"
#include "engine/common/status_macros.h"
#include "engine/common/str_util.h"
#include "engine/models/gemma2/gemma2_model.h"
#include "engine/models/model_directory.h"
#include "engine/parity/tolerances.h"
#include "engine/text/prompt.h"
#include "engine/text/tokenizer.h"

namespace longsana::engine {
namespace {

at::Tensor LongTensor(const std::vector<int64_t>& values) {
  return at::tensor(at::ArrayRef<int64_t>(values), at::TensorOptions().dtype(at::kLong));
}

at::Tensor LongScalar(int64_t value) {
  return at::scalar_tensor(value, at::TensorOptions().dtype(at::kLong));
}

// The JSON sidecar next to a golden: "x.safetensors" -> "x.json".
absl::StatusOr<nlohmann::json> ReadSidecar(const std::string& golden_path) {
  std::filesystem::path p(golden_path);
  p.replace_extension(".json");
  return ReadJsonObjectFile(p.string());
}

Comparison TextCheck(std::string name, const std::string& actual, const std::string& expected) {
  Comparison c;
  c.name = std::move(name);
  c.pass = actual == expected;
  if (!c.pass) {
    size_t i = 0;
    while (i < actual.size() && i < expected.size() && actual[i] == expected[i]) ++i;
    c.max_abs = c.max_rel = 1.0;
    c.detail = StrCat("text differs from byte ", i, " (", actual.size(), " vs ", expected.size(),
                      " bytes)");
  }
  return c;
}

}  // namespace

absl::StatusOr<ParityReport> RunTokenizerParity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile golden, GoldenFile::Open(options.golden_path));
  LONGSANA_ASSIGN_OR_RETURN(nlohmann::json sidecar, ReadSidecar(options.golden_path));
  const nlohmann::json* prompts_json = nullptr;
  const nlohmann::json* chi_json = nullptr;
  try {
    prompts_json = &sidecar.at("notes").at("info").at("prompts");
    chi_json = &sidecar.at("notes").at("chi_prompt");
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        StrCat(options.golden_path, ": sidecar lacks notes.info.prompts / notes.chi_prompt"));
  }
  if (!prompts_json->is_array() || !chi_json->is_string()) {
    return absl::InvalidArgumentError(
        StrCat(options.golden_path, ": sidecar notes.info.prompts must be a list of strings"));
  }
  std::vector<std::string> prompts;
  for (const auto& p : *prompts_json) {
    if (!p.is_string()) {
      return absl::InvalidArgumentError(
          StrCat(options.golden_path, ": sidecar notes.info.prompts must be strings"));
    }
    prompts.push_back(p.get<std::string>());
  }

  LONGSANA_ASSIGN_OR_RETURN(ModelDirectory dir, ModelDirectory::Open(options.model_dir));
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                            Tokenizer::Load(dir.ComponentDir("tokenizer"), dir.tokenizer));
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor select_golden, golden.Get("select_index"));
  const int64_t caption_len = select_golden.numel();
  LONGSANA_ASSIGN_OR_RETURN(at::Tensor plain_golden, golden.Get("plain_ids"));
  const int64_t n = static_cast<int64_t>(prompts.size());
  if (plain_golden.dim() != 2 || plain_golden.size(0) != n) {
    return absl::InvalidArgumentError(StrCat(options.golden_path, ": plain_ids rows (",
                                             plain_golden.sizes()[0], ") != sidecar prompts (", n,
                                             ")"));
  }

  ParityReport report;
  report.component = "tokenizer";
  report.Add(TextCheck("chi_prompt_text", std::string(kChiPrompt), chi_json->get<std::string>()));

  LONGSANA_ASSIGN_OR_RETURN(std::vector<int64_t> chi_ids, tokenizer->Encode(kChiPrompt));
  const int64_t plain_width = plain_golden.size(1);
  std::vector<int64_t> plain_ids, plain_len, full_ids, full_mask, sel_ids, sel_mask;
  std::vector<int64_t> select_index;
  int64_t n_chi = 0, max_len_all = 0;
  for (const std::string& prompt : prompts) {
    LONGSANA_ASSIGN_OR_RETURN(std::vector<int64_t> ids, tokenizer->Encode(prompt));
    plain_len.push_back(static_cast<int64_t>(ids.size()));
    ids.resize(std::max<int64_t>(plain_width, static_cast<int64_t>(ids.size())), -1);
    plain_ids.insert(plain_ids.end(), ids.begin(), ids.end());
    LONGSANA_ASSIGN_OR_RETURN(PromptTokens t, BuildPromptTokens(*tokenizer, prompt, caption_len));
    full_ids.insert(full_ids.end(), t.full_ids.begin(), t.full_ids.end());
    full_mask.insert(full_mask.end(), t.full_mask.begin(), t.full_mask.end());
    sel_ids.insert(sel_ids.end(), t.sel_ids.begin(), t.sel_ids.end());
    sel_mask.insert(sel_mask.end(), t.sel_mask.begin(), t.sel_mask.end());
    select_index = t.select_index;
    n_chi = t.n_chi;
    max_len_all = t.max_len_all;
  }
  // Rows are padded to the golden's width when ours are shorter; a longer row shows up as a
  // shape mismatch.
  auto rows = [n](const std::vector<int64_t>& v) { return LongTensor(v).view({n, -1}); };
  struct Row {
    const char* name;
    at::Tensor actual;
  };
  for (Row& r : std::vector<Row>{{"chi_ids", LongTensor(chi_ids)},
                                 {"n_chi", LongScalar(n_chi)},
                                 {"plain_ids", rows(plain_ids)},
                                 {"plain_len", LongTensor(plain_len)},
                                 {"full_ids", rows(full_ids)},
                                 {"full_mask", rows(full_mask)},
                                 {"select_index", LongTensor(select_index)},
                                 {"sel_ids", rows(sel_ids)},
                                 {"sel_mask", rows(sel_mask)},
                                 {"max_len_all", LongScalar(max_len_all)}}) {
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, golden.Get(r.name));
    report.Add(CompareTensors(r.name, r.actual, expected, Tolerance::Exact()));
  }
  return report;
}

absl::StatusOr<ParityReport> RunGemma2Parity(const ParityOptions& options) {
  LONGSANA_ASSIGN_OR_RETURN(GoldenFile golden, GoldenFile::Open(options.golden_path));
  LONGSANA_ASSIGN_OR_RETURN(ModelDirectory dir, ModelDirectory::Open(options.model_dir));
  Gemma2Options gemma;
  try {
    gemma.device = at::Device(options.device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(StrCat("device: '", options.device, "' is not a device"));
  }
  if (gemma.device.is_cuda()) {
    if (!at::hasCUDA()) return absl::FailedPreconditionError("device: CUDA is not available");
    // GOLDENS.md §5: TF32 alone breaks the fp32 tolerances.
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  gemma.dtype = ScalarTypeOf(options.dtype);
  const Tolerance& kGemmaTolerance = GemmaToleranceFor(options.dtype);
  gemma.softcap = options.softcap;
  LONGSANA_ASSIGN_OR_RETURN(std::unique_ptr<Gemma2Encoder> encoder,
                            Gemma2Encoder::Load(dir, gemma));
  const std::string variant = options.softcap ? "eager" : "sdpa";

  ParityReport report;
  report.component = StrCat("gemma2 (", variant, ", ", ParityDtypeName(options.dtype), ")");
  try {
    {
      LONGSANA_ASSIGN_OR_RETURN(at::Tensor ids, golden.Get("simple/input_ids"));
      LONGSANA_ASSIGN_OR_RETURN(at::Tensor mask, golden.Get("simple/attention_mask"));
      Gemma2Trace trace;
      at::Tensor hidden = encoder->Forward(ids, mask, &trace);
      const std::string name = StrCat("simple/last_hidden_state_", variant);
      LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, golden.Get(name));
      report.Add(CompareTensors(name, hidden, expected, kGemmaTolerance));
      if (options.verbose) {
        for (size_t i = 0; i < trace.layer_inputs.size(); ++i) {
          const std::string dbg = StrCat("simple/dbg_eager/layer", i, "_input");
          if (!golden.Has(dbg) || (i > 0 && !options.softcap)) continue;
          LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected_dbg, golden.Get(dbg));
          report.Add(CompareTensors(dbg, trace.layer_inputs[i], expected_dbg, kGemmaTolerance));
        }
      }
    }
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor ids, golden.Get("chi/input_ids"));
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor mask, golden.Get("chi/attention_mask"));
    at::Tensor hidden = encoder->Forward(ids, mask);  // [B, S, hidden]
    const std::string name = StrCat("chi/last_hidden_state_", variant);
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected, golden.Get(name));
    report.Add(CompareTensors(name, hidden, expected, kGemmaTolerance));

    LONGSANA_ASSIGN_OR_RETURN(at::Tensor caption_mask, golden.Get("chi/caption_mask"));
    const int64_t caption_len = caption_mask.size(-1);
    at::Tensor select = LongTensor(CaptionSelectIndex(ids.size(1), caption_len));
    // [B, S, C] -> [B, L, C] -> [B, 1, L, C] (the reference's hidden[:, None][:, :, select]).
    at::Tensor caption = hidden.index_select(1, select.to(hidden.device())).unsqueeze(1);
    const std::string caption_name = StrCat("chi/caption_", variant);
    LONGSANA_ASSIGN_OR_RETURN(at::Tensor expected_caption, golden.Get(caption_name));
    report.Add(CompareTensors(caption_name, caption, expected_caption, kGemmaTolerance));
    report.Add(CompareTensors("chi/caption_mask", mask.index_select(1, select), caption_mask,
                              Tolerance::Exact()));
  } catch (const c10::Error& e) {
    return absl::InternalError(StrCat("gemma2 parity: ", e.what_without_backtrace()));
  }
  return report;
}

}  // namespace longsana::engine
