// Fails when a file includes across a forbidden layer edge (HOUSE_STYLE.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  WriteFile(dir.File("server/ok.cc"), "#include \"engine/api/engine.h\"\n#include <grpcpp/grpcpp.h>\n");
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

}  // namespace
}  // namespace longsana::testing
