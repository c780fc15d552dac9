// longsana-parity COMPONENT --model DIR --golden FILE.safetensors [--timesteps bf16|exact]
//                 [--softcap] [--verbose] [--device cpu|cuda] [--dtype fp32|bf16] [--threads N]
//
// Runs one component of our implementation on a golden's inputs (tensor names as in
// tests/testdata/GOLDENS.md) and compares every out/* tensor (and with --verbose the dbg/*
// intermediates) with the tolerances of engine/parity/tolerances.h (fp32: GOLDENS.md §5;
// bf16: ours, measured). Prints one line per tensor; exits 0
// only if all pass. Works unchanged on any golden set with the same names and a matching
// model directory.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/parity/parity_components.h"

ABSL_FLAG(std::string, model, "", "diffusers-layout model directory matching the golden");
ABSL_FLAG(std::string, golden, "", "golden *.safetensors file");
ABSL_FLAG(std::string, timesteps, "bf16",
          "timestep convention: bf16 (model sees 1000/960/888/728) or exact");
ABSL_FLAG(bool, softcap, false, "Gemma-2 attention logit soft-cap (eager behaviour)");
ABSL_FLAG(bool, verbose, false, "also compare the dbg/* intermediate tensors");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "fp32",
          "compute dtype of the component: fp32 or bf16 (compared with the bf16 tolerances of "
          "engine/parity/tolerances.h)");
ABSL_FLAG(int, threads, 0, "intra-op threads (0: one per core)");
ABSL_FLAG(std::string, prompt, "",
          "e2e: the user prompt (default: prompt 0 of the set's tokenizer.json sidecar)");

int main(int argc, char** argv) {
  const auto& components = longsana::tools::ParityComponents();
  std::string names;
  for (const auto& [name, run] : components) names += (names.empty() ? "" : "|") + name;
  absl::SetProgramUsageMessage("COMPONENT --model DIR --golden FILE [flags]; COMPONENT is one of " +
                               names);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: %s %s --model DIR --golden FILE [--verbose] ...\n", args[0],
                 names.c_str());
    return 2;
  }
  auto it = components.find(args[1]);
  if (it == components.end()) {
    std::fprintf(stderr, "unknown component '%s' (one of %s)\n", args[1], names.c_str());
    return 2;
  }
  longsana::engine::ParityOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.golden_path = absl::GetFlag(FLAGS_golden);
  options.verbose = absl::GetFlag(FLAGS_verbose);
  options.softcap = absl::GetFlag(FLAGS_softcap);
  options.device = absl::GetFlag(FLAGS_device);
  options.prompt = absl::GetFlag(FLAGS_prompt);
  if (auto dtype = longsana::engine::ParseParityDtype(absl::GetFlag(FLAGS_dtype)); dtype.ok()) {
    options.dtype = *dtype;
  } else {
    std::fprintf(stderr, "--%s\n", std::string(dtype.status().message()).c_str());
    return 2;
  }
  const std::string ts = absl::GetFlag(FLAGS_timesteps);
  if (ts == "bf16") {
    options.timesteps = longsana::engine::TimestepMode::kBf16Rounded;
  } else if (ts == "exact") {
    options.timesteps = longsana::engine::TimestepMode::kExact;
  } else {
    std::fprintf(stderr, "--timesteps must be bf16 or exact, got '%s'\n", ts.c_str());
    return 2;
  }
  if (options.model_dir.empty() || options.golden_path.empty()) {
    std::fprintf(stderr, "--model and --golden are required\n");
    return 2;
  }
  if (options.device != "cpu" && options.device != "cuda") {
    std::fprintf(stderr, "--device must be cpu or cuda, got '%s'\n", options.device.c_str());
    return 2;
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
  if (options.device == "cuda") {
    // GOLDENS.md §5: TF32 alone breaks the fp32 tolerances.
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }

  auto report = it->second(options);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::fputs(longsana::engine::FormatParityReport(*report).c_str(), stdout);
  return report->ok() ? 0 : 1;
}
