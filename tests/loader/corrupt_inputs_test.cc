// Corrupt and malformed checkpoints/configs: each must produce a clear error, never a crash.
// Built twice: plainly and under AddressSanitizer + UBSan (label `asan`).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "engine/common/json_fields.h"
#include "engine/loader/checkpoint.h"
#include "engine/loader/safetensors.h"
#include "engine/models/gemma2/gemma2_config.h"
#include "engine/models/longsana_dit/dit_config.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_config.h"
#include "tests/common/safetensors_writer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::BuildSafetensors;
using ::longsana::testing::FakeTensor;
using ::longsana::testing::FloatBytes;
using ::longsana::testing::RawSafetensors;
using ::longsana::testing::TempDir;
using ::longsana::testing::WriteFile;
using ::testing::HasSubstr;

std::string ValidFile() {
  return BuildSafetensors({{"a", "F32", {2, 2}, FloatBytes({1, 2, 3, 4})},
                           {"b", "F32", {3}, FloatBytes({5, 6, 7})}},
                          {{"format", "pt"}});
}

// Opens `bytes` through the real mmap path and returns the status.
absl::Status OpenBytes(const std::string& bytes) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteFile(path, bytes);
  return SafetensorsFile::Open(path).status();
}

void ExpectInvalid(const absl::Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(needle));
}

TEST(CorruptSafetensors, ValidFileOpens) {
  TempDir dir;
  WriteFile(dir.File("ok.safetensors"), ValidFile());
  auto f = SafetensorsFile::Open(dir.File("ok.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->header().metadata.at("format"), "pt");
}

TEST(CorruptSafetensors, TruncatedInData) {
  std::string bytes = ValidFile();
  bytes.resize(bytes.size() - 5);
  ExpectInvalid(OpenBytes(bytes), "out of range");
}

TEST(CorruptSafetensors, TruncatedInHeader) {
  std::string bytes = ValidFile();
  bytes.resize(20);
  ExpectInvalid(OpenBytes(bytes), "larger than the");
}

TEST(CorruptSafetensors, ShorterThanLengthField) {
  ExpectInvalid(OpenBytes("abc"), "shorter than the 8-byte header length");
  ExpectInvalid(OpenBytes(""), "shorter than the 8-byte header length");
}

TEST(CorruptSafetensors, HeaderLengthLargerThanFile) {
  ExpectInvalid(OpenBytes(RawSafetensors(4096, "{}", "")), "larger than the");
}

TEST(CorruptSafetensors, HeaderLengthTwoToThe63) {
  ExpectInvalid(OpenBytes(RawSafetensors(uint64_t{1} << 63, "{}", "")), "exceeds the limit");
  ExpectInvalid(OpenBytes(RawSafetensors(~uint64_t{0}, "{}", "")), "exceeds the limit");
}

TEST(CorruptSafetensors, InvalidJson) {
  const std::string header = "{\"a\": {\"dtype\": \"F32\",";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, "")), "not valid JSON");
}

TEST(CorruptSafetensors, HeaderNotAnObject) {
  ExpectInvalid(OpenBytes(RawSafetensors(2, "[]", "")), "must be a JSON object");
}

TEST(CorruptSafetensors, UnknownDtype) {
  const std::string header = R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, "x")), "unsupported dtype 'F8_E4M3'");
}

TEST(CorruptSafetensors, SpanOutOfRange) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, std::string(16, '\0'))),
                "out of range");
}

TEST(CorruptSafetensors, HugeOffsets) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, "")), "out of range");
}

TEST(CorruptSafetensors, BeginAfterEnd) {
  const std::string header = R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, "abcd")), "begin after end");
}

TEST(CorruptSafetensors, OverlappingSpans) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, std::string(12, '\0'))),
                "overlap");
}

TEST(CorruptSafetensors, ShapeSizeMismatch) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, std::string(8, '\0'))),
                "needs 12 bytes but data_offsets span 8");
}

TEST(CorruptSafetensors, ShapeProductOverflow) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, std::string(8, '\0'))),
                "more than 2^64");
}

TEST(CorruptSafetensors, NegativeOrFractionalShape) {
  for (const std::string shape : {"[-1]", "[1.5]", "[\"2\"]", "3"}) {
    const std::string header =
        R"({"a":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})";
    absl::Status s = OpenBytes(RawSafetensors(header.size(), header, std::string(4, '\0')));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << shape;
  }
}

TEST(CorruptSafetensors, MissingFieldsAndBadEntries) {
  for (const std::string entry : {R"({"shape":[1],"data_offsets":[0,4]})",
                                  R"({"dtype":"F32","data_offsets":[0,4]})",
                                  R"({"dtype":"F32","shape":[1]})",
                                  R"({"dtype":"F32","shape":[1],"data_offsets":[0]})",
                                  R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})", R"(42)"}) {
    const std::string header = R"({"a":)" + entry + "}";
    absl::Status s = OpenBytes(RawSafetensors(header.size(), header, std::string(4, '\0')));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << entry;
    EXPECT_THAT(std::string(s.message()), HasSubstr("tensor 'a'")) << entry;
  }
}

TEST(CorruptSafetensors, NonStringMetadata) {
  const std::string header = R"({"__metadata__":{"format":1}})";
  ExpectInvalid(OpenBytes(RawSafetensors(header.size(), header, "")), "__metadata__");
}

TEST(CorruptSafetensors, MissingFileIsNotFound) {
  TempDir dir;
  auto f = SafetensorsFile::Open(dir.File("absent.safetensors"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("absent.safetensors"));
}

// --- sharded checkpoints ---------------------------------------------------------------

TEST(CorruptShards, MissingShardNamedInIndex) {
  TempDir dir;
  WriteFile(dir.File("model-00001-of-00002.safetensors"),
            BuildSafetensors({{"a", "F32", {1}, FloatBytes({1})}}));
  WriteFile(dir.File("model.safetensors.index.json"),
            R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
            R"("b":"model-00002-of-00002.safetensors"}})");
  auto ckpt = Checkpoint::OpenDirectory(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound) << ckpt.status();
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr("model-00002-of-00002.safetensors"));
}

TEST(CorruptShards, TensorAbsentFromItsShard) {
  TempDir dir;
  WriteFile(dir.File("s1.safetensors"), BuildSafetensors({{"a", "F32", {1}, FloatBytes({1})}}));
  WriteFile(dir.File("w.safetensors.index.json"),
            R"({"weight_map":{"a":"s1.safetensors","ghost":"s1.safetensors"}})");
  auto ckpt = Checkpoint::OpenIndex(dir.File("w.safetensors.index.json"));
  ExpectInvalid(ckpt.status(), "'ghost' (expected in s1.safetensors)");
}

TEST(CorruptShards, BadIndexDocuments) {
  ExpectInvalid(ParseShardIndex("{", "i.json").status(), "invalid JSON");
  ExpectInvalid(ParseShardIndex("{}", "i.json").status(), "'weight_map' is missing");
  ExpectInvalid(ParseShardIndex(R"({"weight_map":[]})", "i.json").status(), "expected an object");
  ExpectInvalid(ParseShardIndex(R"({"weight_map":{"a":3}})", "i.json").status(),
                "must be a string");
  ExpectInvalid(ParseShardIndex(R"({"weight_map":{"a":"../../etc/passwd"}})", "i.json").status(),
                "not a plain file name");
}

TEST(CorruptShards, EmptyDirectoryIsNotFound) {
  TempDir dir;
  EXPECT_EQ(Checkpoint::OpenDirectory(dir.path()).status().code(), absl::StatusCode::kNotFound);
}

// --- configs -----------------------------------------------------------------------------

nlohmann::json TinyDitJson() {
  return *ReadJsonObjectFile(longsana::testing::TinyModelDir() + "/transformer/config.json");
}

TEST(CorruptConfigs, MissingFieldNamesFileAndField) {
  nlohmann::json j = TinyDitJson();
  j.erase("num_layers");
  auto c = DitConfig::FromJson(j, "transformer/config.json");
  ExpectInvalid(c.status(), "transformer/config.json: required field 'num_layers' is missing");
}

TEST(CorruptConfigs, WrongTypeNamesFileAndField) {
  nlohmann::json j = TinyDitJson();
  j["num_layers"] = "two";
  auto c = DitConfig::FromJson(j, "transformer/config.json");
  ExpectInvalid(c.status(),
                "transformer/config.json: field 'num_layers': expected an integer, got string");
  j = TinyDitJson();
  j["patch_size"] = {1, "2", 2};
  ExpectInvalid(DitConfig::FromJson(j, "t.json").status(), "field 'patch_size': element 1");
  j = TinyDitJson();
  j["mlp_ratio"] = true;
  ExpectInvalid(DitConfig::FromJson(j, "t.json").status(), "field 'mlp_ratio': expected a number");
}

TEST(CorruptConfigs, InconsistentValuesNameTheField) {
  nlohmann::json j = TinyDitJson();
  j["cross_attention_head_dim"] = 16;
  ExpectInvalid(DitConfig::FromJson(j, "t.json").status(), "field 'num_cross_attention_heads'");
  j = TinyDitJson();
  j["num_layers"] = -3;
  ExpectInvalid(DitConfig::FromJson(j, "t.json").status(), "field 'num_layers'");
}

TEST(CorruptConfigs, VaeAndGemma) {
  auto vae = *ReadJsonObjectFile(longsana::testing::TinyModelDir() + "/vae/config.json");
  vae["latents_std"] = {1.0, 2.0};
  ExpectInvalid(WanVaeConfig::FromJson(vae, "vae/config.json").status(),
                "vae/config.json: field 'latents_std': expected z_dim = 16 values, got 2");
  auto gemma = *ReadJsonObjectFile(longsana::testing::TinyModelDir() + "/text_encoder/config.json");
  gemma.erase("head_dim");
  ExpectInvalid(Gemma2Config::FromJson(gemma, "text_encoder/config.json").status(),
                "text_encoder/config.json: required field 'head_dim' is missing");
  gemma = *ReadJsonObjectFile(longsana::testing::TinyModelDir() + "/text_encoder/config.json");
  gemma["num_key_value_heads"] = 3;
  ExpectInvalid(Gemma2Config::FromJson(gemma, "t.json").status(), "field 'num_key_value_heads'");
}

TEST(CorruptConfigs, InvalidJsonFile) {
  TempDir dir;
  WriteFile(dir.File("config.json"), "{\"a\": ");
  auto c = DitConfig::FromFile(dir.File("config.json"));
  ExpectInvalid(c.status(), "invalid JSON");
  WriteFile(dir.File("config.json"), "[1, 2]");
  ExpectInvalid(DitConfig::FromFile(dir.File("config.json")).status(), "expected a JSON object");
}

TEST(CorruptConfigs, ModelIndex) {
  nlohmann::json j = {{"_class_name", "X"},
                      {"transformer", {"diffusers", "SanaVideoTransformer3DModel"}},
                      {"vae", {"diffusers", "AutoencoderKLWan"}},
                      {"text_encoder", {"transformers", "Gemma2Model"}}};
  ExpectInvalid(ModelIndex::FromJson(j, "model_index.json").status(),
                "required component 'tokenizer' is missing");
  j["tokenizer"] = {"transformers", "GemmaTokenizer"};
  EXPECT_TRUE(ModelIndex::FromJson(j, "model_index.json").ok());
  j["vae"] = {"diffusers", "AutoencoderKL"};
  ExpectInvalid(ModelIndex::FromJson(j, "model_index.json").status(),
                "field 'vae': class 'AutoencoderKL' is not supported");
  j["vae"] = {"diffusers"};
  ExpectInvalid(ModelIndex::FromJson(j, "model_index.json").status(), "field 'vae'");
}

TEST(CorruptConfigs, MissingModelDirectoryFiles) {
  TempDir dir;
  auto d = ModelDirectory::Open(dir.path());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("model_index.json"));
  EXPECT_EQ(ModelDirectory::Open(dir.File("nope")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace longsana::engine
