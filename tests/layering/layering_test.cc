// Fails when a file includes across a forbidden layer edge (HOUSE_STYLE.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>

#include "tests/common/temp_dir.h"
#include "tests/layering/layering_check.h"

#ifndef LONGSANA_SOURCE_DIR
#error "LONGSANA_SOURCE_DIR must be defined by the build"
#endif

namespace longsana::testing {
namespace {

using ::testing::HasSubstr;

TEST(Layering, SourceTreeRespectsTheDependencyDirection) {
  const auto violations = CheckLayering(LONGSANA_SOURCE_DIR);
  EXPECT_TRUE(violations.empty()) << FormatViolations(violations);
}

// The checker itself: every forbidden edge of the design is detected.
TEST(Layering, DetectsEveryForbiddenEdge) {
  TempDir dir;
  WriteFile(dir.File("server/a.cc"), "#include <torch/torch.h>\n");
  WriteFile(dir.File("server/b.h"), "  #  include \"engine/models/longsana_dit/dit_config.h\"\n");
  WriteFile(dir.File("server/ok.cc"),
            "#include \"engine/api/engine.h\"\n#include <grpcpp/grpcpp.h>\n");
  WriteFile(dir.File("engine/runner/c.cc"), "#include <grpcpp/grpcpp.h>\n");
  WriteFile(dir.File("engine/d.h"), "#include \"proto/longsana/v1/longsana.pb.h\"\n");
  WriteFile(dir.File("engine/api/e.h"), "#include <ATen/ATen.h>\n");
  WriteFile(dir.File("engine/models/ok.cc"), "#include <ATen/ATen.h>\n");
  WriteFile(dir.File("kernels/f.cu"), "#include \"engine/models/longsana_dit/dit_model.h\"\n");
  WriteFile(dir.File("client/g.cc"), "#include \"engine/api/engine.h\"\n");
  WriteFile(dir.File("build-x/server/ignored.cc"), "#include <torch/torch.h>\n");
  const auto v = CheckLayering(dir.path());
  const std::string report = FormatViolations(v);
  EXPECT_THAT(report, HasSubstr("server/a.cc:1: #include \"torch/torch.h\""));
  EXPECT_THAT(report, HasSubstr("server/b.h:1"));
  EXPECT_THAT(report, HasSubstr("engine/runner/c.cc:1"));
  EXPECT_THAT(report, HasSubstr("engine/d.h:1"));
  EXPECT_THAT(report, HasSubstr("engine/api/e.h:1"));
  EXPECT_THAT(report, HasSubstr("kernels/f.cu:1"));
  EXPECT_THAT(report, HasSubstr("client/g.cc:1"));
  EXPECT_THAT(report, ::testing::Not(HasSubstr("ok.cc")));
  EXPECT_THAT(report, ::testing::Not(HasSubstr("ignored.cc")));
  EXPECT_EQ(v.size(), 7u) << report;
}

// The intra-engine table, proven to fail: each forbidden edge of issue 10, planted in a
// synthetic tree, is reported once, naming the file, the line, the include and the rule.
TEST(Layering, DetectsEveryForbiddenEngineEdge) {
  struct Case {
    const char* file;
    const char* include;
    const char* rule;  // expected start of the rule text
  };
  const Case kForbidden[] = {
      {"engine/sampler/x.cc", "engine/parity/golden.h",
       "engine/sampler/ must not include engine/parity/"},
      {"engine/models/wan_vae/x.cc", "engine/parity/golden.h",
       "engine/models/ must not include engine/parity/"},
      {"engine/text/x.cc", "engine/parity/text_parity.h",
       "engine/text/ must not include engine/parity/"},
      {"engine/loader/x.cc", "engine/parity/golden.h",
       "engine/loader/ must not include engine/parity/"},
      {"engine/common/x.h", "engine/parity/golden.h",
       "engine/common/ must not include engine/parity/"},
      {"engine/scheduler/x.cc", "engine/parity/golden.h",
       "engine/scheduler/ must not include engine/parity/"},
      {"engine/api/x.h", "engine/parity/golden.h", "engine/api/ must not include engine/parity/"},
      {"engine/models/longsana_dit/x.cc", "engine/sampler/noise.h",
       "engine/models/ must not include engine/sampler/"},
      {"engine/models/x.h", "engine/sampler/sampler_options.h",
       "engine/models/ must not include engine/sampler/"},
      {"engine/models/gemma2/x.cc", "engine/runner/engine_impl.h",
       "engine/models/ must not include engine/runner/"},
      {"engine/models/wan_vae/x.cc", "engine/scheduler/scheduler.h",
       "engine/models/ must not include engine/scheduler/"},
      {"engine/models/wan_vae/x.cc", "engine/media/fmp4_encoder.h",
       "engine/models/ must not include engine/media/"},
      {"engine/loader/x.cc", "engine/models/model_directory.h",
       "engine/loader/ must not include engine/models/"},
      {"engine/loader/x.cc", "engine/sampler/noise.h",
       "engine/loader/ must not include engine/sampler/"},
      {"engine/loader/x.cc", "engine/text/tokenizer.h",
       "engine/loader/ must not include engine/text/"},
      {"engine/common/x.h", "engine/models/model_directory.h",
       "engine/common/ must not include engine/models/"},
      {"engine/common/x.h", "engine/media/fmp4_encoder.h",
       "engine/common/ must not include engine/media/"},
      {"engine/common/x.h", "engine/runner/engine_impl.h",
       "engine/common/ must not include engine/runner/"},
      {"engine/scheduler/x.cc", "engine/models/longsana_dit/dit_config.h",
       "engine/scheduler/ must not include engine/models/"},
      {"engine/scheduler/x.cc", "engine/loader/checkpoint.h",
       "engine/scheduler/ must not include engine/loader/"},
      {"engine/scheduler/x.cc", "ATen/ATen.h", "the scheduler is torch-free"},
      {"engine/scheduler/x.cc", "torch/torch.h", "the scheduler is torch-free"},
      {"engine/api/x.h", "engine/loader/checkpoint.h",
       "engine/api/ must not include engine/loader/"},
      {"engine/api/x.h", "engine/scheduler/scheduler.h",
       "engine/api/ must not include engine/scheduler/"},
      {"engine/sampler/x.cc", "engine/runner/engine_session.h",
       "engine/sampler/ must not include engine/runner/"},
      {"engine/parity/x.cc", "engine/runner/engine_impl.h",
       "engine/parity/ must not include engine/runner/"},
      {"engine/media/x.cc", "engine/runner/engine_impl.h",
       "engine/media/ must not include engine/runner/"},
      {"engine/newdir/x.cc", "engine/common/str_util.h",
       "engine/newdir/ has no row in the engine dependency table"},
  };
  for (const Case& c : kForbidden) {
    TempDir dir;
    WriteFile(dir.File(c.file), std::string("// header\n#include \"") + c.include + "\"\n");
    const auto v = CheckLayering(dir.path());
    const std::string report = FormatViolations(v);
    ASSERT_EQ(v.size(), 1u) << c.file << " -> " << c.include << ":\n" << report;
    EXPECT_EQ(v[0].file, c.file);
    EXPECT_EQ(v[0].line, 2);
    EXPECT_EQ(v[0].include, c.include);
    EXPECT_THAT(v[0].rule, ::testing::StartsWith(c.rule)) << report;
    EXPECT_THAT(report, HasSubstr(std::string(c.file) + ":2: #include \"" + c.include +
                                  "\" violates: " + c.rule));
  }
}

// The edges the tree uses pass, and tests and tools may include parity code.
TEST(Layering, AllowsTheEngineEdgesOfTheTable) {
  TempDir dir;
  WriteFile(dir.File("engine/sampler/a.cc"),
            "#include \"engine/sampler/noise.h\"\n#include \"engine/models/model_directory.h\"\n"
            "#include \"engine/common/str_util.h\"\n#include <ATen/ATen.h>\n");
  WriteFile(dir.File("engine/models/wan_vae/b.cc"),
            "#include \"engine/models/model_directory.h\"\n#include \"engine/loader/weights.h\"\n");
  WriteFile(dir.File("engine/parity/c.cc"),
            "#include \"engine/sampler/longlive_sampler.h\"\n#include \"engine/text/prompt.h\"\n"
            "#include \"engine/models/wan_vae/wan_vae_decoder.h\"\n");
  WriteFile(dir.File("engine/runner/d.cc"),
            "#include \"engine/scheduler/scheduler.h\"\n#include \"engine/media/fmp4_encoder.h\"\n"
            "#include \"engine/api/engine.h\"\n");
  WriteFile(dir.File("engine/scheduler/e.h"), "#include \"engine/api/engine.h\"\n");
  WriteFile(dir.File("engine/api/f.h"), "#include \"engine/common/status_macros.h\"\n");
  WriteFile(dir.File("tests/sampler/g.cc"), "#include \"engine/parity/golden.h\"\n");
  WriteFile(dir.File("tools/parity/h.cc"), "#include \"engine/parity/dit_parity.h\"\n");
  const auto v = CheckLayering(dir.path());
  EXPECT_TRUE(v.empty()) << FormatViolations(v);
}

// Every allowed folder has a row, and the table has no cycle (a folder reaching itself
// through its allowed folders would be the sampler -> parity -> sampler loop of old).
TEST(Layering, EngineTableIsAcyclic) {
  std::map<std::string, std::vector<std::string>> edges;
  for (const auto& row : EngineDependencies()) edges[row.folder] = row.allowed;
  std::set<std::string> done, on_path;
  std::function<void(const std::string&)> visit = [&](const std::string& folder) {
    ASSERT_TRUE(edges.count(folder)) << folder << " is allowed but has no row";
    ASSERT_FALSE(on_path.count(folder)) << "cycle through " << folder;
    if (done.count(folder)) return;
    on_path.insert(folder);
    for (const auto& next : edges[folder]) visit(next);
    on_path.erase(folder);
    done.insert(folder);
  };
  for (const auto& [folder, allowed] : edges) visit(folder);
}

}  // namespace
}  // namespace longsana::testing
