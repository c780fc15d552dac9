// Fmp4Encoder: settings validation, the byte layout of the init segment and of each fragment,
// the stream as libavformat/libavcodec see it (codec, size, frame count, continuous pts, key
// frames at fragment starts), decoded quality, and late joiners.
#include "engine/media/fmp4_encoder.h"

#include <algorithm>
#include <cerrno>
#include <numeric>
#include <string>
#include <vector>

#include "engine/media/ffmpeg_util.h"
#include "engine/media/mp4_boxes.h"
#include "engine/media/test_pattern.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/media/media_test_util.h"

extern "C" {
#include <libavutil/error.h>
#include <libavutil/pixfmt.h>
}

namespace longsana::testing {
namespace {

using engine::EncodedFragment;
using engine::EncoderSettings;
using engine::Fmp4Encoder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kMinPsnrDb = 35.0;

EncoderSettings SmallSettings() {
  EncoderSettings settings;
  settings.width = 160;
  settings.height = 96;
  return settings;
}

// ---------------------------------------------------------------------------------------------
// Settings.

struct InvalidCase {
  const char* name;
  void (*mutate)(EncoderSettings&);
  const char* field;
};

TEST(EncoderSettingsTest, DefaultsAreValid) {
  EncoderSettings settings = SmallSettings();
  EXPECT_TRUE(settings.Validate().ok()) << settings.Validate();
  EXPECT_EQ(settings.fps, 16);
  EXPECT_EQ(settings.preset, "veryfast");
  EXPECT_EQ(settings.profile, "high");
  EXPECT_EQ(settings.EffectiveCrf(), 23);
}

TEST(EncoderSettingsTest, InvalidSettingsNameTheField) {
  const InvalidCase cases[] = {
      {"odd width", [](EncoderSettings& s) { s.width = 161; }, "width"},
      {"zero width", [](EncoderSettings& s) { s.width = 0; }, "width"},
      {"huge width", [](EncoderSettings& s) { s.width = 16384; }, "width"},
      {"odd height", [](EncoderSettings& s) { s.height = 97; }, "height"},
      {"negative height", [](EncoderSettings& s) { s.height = -2; }, "height"},
      {"zero fps", [](EncoderSettings& s) { s.fps = 0; }, "fps"},
      {"huge fps", [](EncoderSettings& s) { s.fps = 1000; }, "fps"},
      {"crf too high", [](EncoderSettings& s) { s.crf = 52; }, "crf"},
      {"crf negative", [](EncoderSettings& s) { s.crf = -1; }, "crf"},
      {"crf and bitrate", [](EncoderSettings& s) { s.crf = 20, s.bitrate_bps = 1'000'000; },
       "bitrate_bps"},
      {"bitrate too low", [](EncoderSettings& s) { s.bitrate_bps = 100; }, "bitrate_bps"},
      {"unknown preset", [](EncoderSettings& s) { s.preset = "warpspeed"; }, "preset"},
      {"empty preset", [](EncoderSettings& s) { s.preset = ""; }, "preset"},
      {"unknown profile", [](EncoderSettings& s) { s.profile = "high10"; }, "profile"},
      {"negative threads", [](EncoderSettings& s) { s.threads = -1; }, "threads"},
      {"too many threads", [](EncoderSettings& s) { s.threads = 65; }, "threads"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.name);
    EncoderSettings settings = SmallSettings();
    c.mutate(settings);
    const absl::Status status = settings.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field));
    // Create validates before touching FFmpeg.
    const absl::StatusOr<std::unique_ptr<Fmp4Encoder>> encoder = Fmp4Encoder::Create(settings);
    EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(encoder.status().message()), HasSubstr(c.field));
  }
}

TEST(EncoderSettingsTest, AcceptsEveryPresetProfileAndBitrateMode) {
  for (const char* preset : {"ultrafast", "veryfast", "medium"}) {
    for (const char* profile : {"baseline", "main", "high"}) {
      EncoderSettings settings = SmallSettings();
      settings.preset = preset;
      settings.profile = profile;
      settings.crf = 30;
      auto encoder = Fmp4Encoder::Create(settings);
      ASSERT_TRUE(encoder.ok()) << preset << "/" << profile << ": " << encoder.status();
      std::vector<uint8_t> block = engine::RenderTestPatternBlock(160, 96, 0, 3);
      ASSERT_TRUE((*encoder)->EncodeBlock(block, 3).ok());
    }
  }
  EncoderSettings bitrate = SmallSettings();
  bitrate.bitrate_bps = 300'000;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(bitrate, {9, 8});
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->rgb_frames.size(), 17u);
}

// ---------------------------------------------------------------------------------------------
// Errors and helpers.

TEST(FfmpegErrorTest, CarriesStrerrorTextAndMapsCodes) {
  const absl::Status einval = engine::FfmpegError(AVERROR(EINVAL), "avcodec_open2(libx264)");
  EXPECT_EQ(einval.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(einval.message()), HasSubstr("avcodec_open2(libx264)"));
  EXPECT_THAT(std::string(einval.message()), HasSubstr("Invalid argument"));
  EXPECT_EQ(engine::FfmpegError(AVERROR(ENOMEM), "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(engine::FfmpegError(AVERROR_ENCODER_NOT_FOUND, "x").code(),
            absl::StatusCode::kFailedPrecondition);
  const absl::Status invalid_data = engine::FfmpegError(AVERROR_INVALIDDATA, "demux");
  EXPECT_EQ(invalid_data.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(invalid_data.message()), HasSubstr("Invalid data found"));
}

TEST(Mp4BoxesTest, ParsesAndRejectsMalformedRanges) {
  const std::string two_boxes = std::string(
                                    "\0\0\0\x0c"
                                    "abcd"
                                    "1234",
                                    12) +
                                std::string(
                                    "\0\0\0\x08"
                                    "wxyz",
                                    8);
  auto boxes = engine::ParseMp4Boxes(two_boxes);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_THAT(engine::Mp4BoxTypes(*boxes), ElementsAre("abcd", "wxyz"));
  EXPECT_EQ((*boxes)[0].Payload(two_boxes), "1234");
  EXPECT_EQ((*boxes)[1].offset, 12u);

  const std::string largesize = std::string(
      "\0\0\0\x01"
      "big!"
      "\0\0\0\0\0\0\0\x12"
      "xy",
      18);
  boxes = engine::ParseMp4Boxes(largesize);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_EQ((*boxes)[0].header_size, 16u);
  EXPECT_EQ((*boxes)[0].Payload(largesize), "xy");

  EXPECT_EQ(engine::ParseMp4Boxes(std::string("\0\0\0\x10"
                                              "abcd",
                                              8))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // runs past the end
  EXPECT_EQ(engine::ParseMp4Boxes(std::string("\0\0\0\x04"
                                              "abcd",
                                              8))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // smaller than its header
  EXPECT_EQ(engine::ParseMp4Boxes(std::string("\0\0\0", 3)).status().code(),
            absl::StatusCode::kInvalidArgument);  // truncated header
}

TEST(Fmp4EncoderTest, RejectsBadBlocksAndStaysUsable) {
  auto encoder = Fmp4Encoder::Create(SmallSettings());
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::vector<uint8_t> block = engine::RenderTestPatternBlock(160, 96, 0, 2);

  absl::StatusOr<EncodedFragment> result = (*encoder)->EncodeBlock(block, 0);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("num_frames"));

  result = (*encoder)->EncodeBlock(block, 3);  // buffer holds 2 frames
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("rgb"));

  result = (*encoder)->EncodeBlock(std::span<const uint8_t>(), 1);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);

  result = (*encoder)->EncodeBlock(block, 2);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->block_index, 0);
  EXPECT_EQ(result->first_frame, 0);
  EXPECT_EQ((*encoder)->frames_encoded(), 2);
}

// ---------------------------------------------------------------------------------------------
// Byte layout.

TEST(Fmp4EncoderTest, InitSegmentIsFtypMoovWithAvcCMatchingTheCodecString) {
  auto encoder = Fmp4Encoder::Create(SmallSettings());
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  const std::string& init = (*encoder)->init_segment();
  auto boxes = engine::ParseMp4Boxes(init);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_THAT(engine::Mp4BoxTypes(*boxes), ElementsAre("ftyp", "moov"));

  // Fragmented: the moov announces movie fragments and holds no samples.
  EXPECT_TRUE(BoxPath(init, {"moov", "mvex", "trex"}).ok());
  auto stsz = BoxPath(init, {"moov", "trak", "mdia", "minf", "stbl", "stsz"});
  ASSERT_TRUE(stsz.ok()) << stsz.status();
  EXPECT_EQ(ReadU32(*stsz, 8), 0u);  // sample_count

  auto stsd = BoxPath(init, {"moov", "trak", "mdia", "minf", "stbl", "stsd"});
  ASSERT_TRUE(stsd.ok()) << stsd.status();
  // stsd: version/flags (4), entry_count (4), then sample entries.
  auto avc1 = ChildPayload(stsd->substr(8), "avc1");
  ASSERT_TRUE(avc1.ok()) << avc1.status();
  // VisualSampleEntry: 6 reserved + 2 data_reference_index + 16 pre_defined/reserved, then
  // width and height (16 bits each); child boxes start after 78 bytes.
  EXPECT_EQ((static_cast<uint8_t>((*avc1)[24]) << 8) | static_cast<uint8_t>((*avc1)[25]), 160);
  EXPECT_EQ((static_cast<uint8_t>((*avc1)[26]) << 8) | static_cast<uint8_t>((*avc1)[27]), 96);
  auto avcc = ChildPayload(avc1->substr(78), "avcC");
  ASSERT_TRUE(avcc.ok()) << avcc.status();
  ASSERT_GE(avcc->size(), 4u);
  EXPECT_EQ(static_cast<uint8_t>((*avcc)[0]), 1);    // configurationVersion
  EXPECT_EQ(static_cast<uint8_t>((*avcc)[1]), 100);  // profile_idc: High
  char expected[32];
  std::snprintf(expected, sizeof(expected), "avc1.%02x%02x%02x", static_cast<uint8_t>((*avcc)[1]),
                static_cast<uint8_t>((*avcc)[2]), static_cast<uint8_t>((*avcc)[3]));
  EXPECT_EQ((*encoder)->codec_string(), expected);
  EXPECT_EQ((*encoder)->mime_type(), std::string("video/mp4; codecs=\"") + expected + "\"");
}

TEST(Fmp4EncoderTest, BaselineProfileShowsInTheCodecString) {
  EncoderSettings settings = SmallSettings();
  settings.profile = "baseline";
  auto encoder = Fmp4Encoder::Create(settings);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_THAT((*encoder)->codec_string(), ::testing::StartsWith("avc1.42"));
}

TEST(Fmp4EncoderTest, EveryBlockIsExactlyOneMoofMdatWithContinuousTimes) {
  const std::vector<int> blocks = {9, 8, 8, 1, 12};  // variable, including a 1-frame block
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(SmallSettings(), blocks);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ(stream->fragments.size(), blocks.size());

  auto mdhd = BoxPath(stream->init_segment, {"moov", "trak", "mdia", "mdhd"});
  ASSERT_TRUE(mdhd.ok()) << mdhd.status();
  // mdhd version 0: version/flags, creation, modification, timescale; version 1 has 64-bit
  // times.
  const uint32_t timescale = (*mdhd)[0] == 1 ? ReadU32(*mdhd, 20) : ReadU32(*mdhd, 12);
  ASSERT_EQ(timescale % 16, 0u) << timescale;

  int64_t first_frame = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    SCOPED_TRACE(::testing::Message() << "block " << b);
    const EncodedFragment& fragment = stream->fragments[b];
    EXPECT_EQ(fragment.block_index, static_cast<int64_t>(b));
    EXPECT_EQ(fragment.first_frame, first_frame);
    EXPECT_EQ(fragment.num_frames, blocks[b]);
    EXPECT_DOUBLE_EQ(fragment.start_seconds, first_frame / 16.0);
    EXPECT_DOUBLE_EQ(fragment.duration_seconds, blocks[b] / 16.0);

    auto boxes = engine::ParseMp4Boxes(fragment.bytes);
    ASSERT_TRUE(boxes.ok()) << boxes.status();
    EXPECT_THAT(engine::Mp4BoxTypes(*boxes), ElementsAre("moof", "mdat"));

    auto mfhd = BoxPath(fragment.bytes, {"moof", "mfhd"});
    ASSERT_TRUE(mfhd.ok()) << mfhd.status();
    EXPECT_EQ(ReadU32(*mfhd, 4), b + 1);  // sequence_number
    auto trafs = engine::ParseMp4Boxes(*BoxPath(fragment.bytes, {"moof"}));
    ASSERT_TRUE(trafs.ok());
    EXPECT_EQ(std::count_if(trafs->begin(), trafs->end(),
                            [](const engine::Mp4Box& box) { return box.type == "traf"; }),
              1);
    auto tfdt = BoxPath(fragment.bytes, {"moof", "traf", "tfdt"});
    ASSERT_TRUE(tfdt.ok()) << tfdt.status();
    const uint64_t base_time = (*tfdt)[0] == 1 ? ReadU64(*tfdt, 4) : ReadU32(*tfdt, 4);
    EXPECT_EQ(base_time, static_cast<uint64_t>(first_frame) * timescale / 16);
    auto trun = BoxPath(fragment.bytes, {"moof", "traf", "trun"});
    ASSERT_TRUE(trun.ok()) << trun.status();
    EXPECT_EQ(ReadU32(*trun, 4), static_cast<uint32_t>(blocks[b]));  // sample_count
    first_frame += blocks[b];
  }
}

// ---------------------------------------------------------------------------------------------
// The stream as a demuxer and decoder see it.

TEST(Fmp4EncoderTest, DemuxesAsOneH264StreamWithContinuousPtsAndKeyFramesAtFragmentStarts) {
  const std::vector<int> blocks = {17, 16, 16, 16};
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(SmallSettings(), blocks);
  ASSERT_TRUE(stream.ok()) << stream.status();
  const std::string file = Concatenate(*stream);
  auto top = engine::ParseMp4Boxes(file);
  ASSERT_TRUE(top.ok());
  EXPECT_THAT(engine::Mp4BoxTypes(*top), ElementsAre("ftyp", "moov", "moof", "mdat", "moof", "mdat",
                                                     "moof", "mdat", "moof", "mdat"));

  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(file);
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->num_streams, 1);
  EXPECT_EQ(video->codec_name, "h264");
  EXPECT_EQ(video->width, 160);
  EXPECT_EQ(video->height, 96);
  const int total = std::accumulate(blocks.begin(), blocks.end(), 0);
  ASSERT_EQ(video->packets.size(), static_cast<size_t>(total));
  ASSERT_EQ(video->rgb_frames.size(), static_cast<size_t>(total));
  EXPECT_EQ(video->color_space, AVCOL_SPC_BT709);
  EXPECT_EQ(video->color_range, AVCOL_RANGE_MPEG);

  // One frame every 1/16 s, starting at 0, in the stream's time base.
  ASSERT_EQ(static_cast<int64_t>(video->time_base_den) % (16 * video->time_base_num), 0);
  const int64_t ticks_per_frame = video->time_base_den / (16 * video->time_base_num);
  for (size_t i = 0; i < video->packets.size(); ++i) {
    EXPECT_EQ(video->packets[i].pts, static_cast<int64_t>(i) * ticks_per_frame) << i;
    EXPECT_EQ(video->packets[i].dts, video->packets[i].pts) << i;
    EXPECT_EQ(video->packets[i].duration, ticks_per_frame) << i;
    EXPECT_EQ(video->frame_pts[i], static_cast<int64_t>(i) * ticks_per_frame) << i;
  }

  // Which fragment each packet's data lies in (mdat byte ranges), and key frames exactly at
  // the fragment starts.
  std::vector<std::pair<uint64_t, uint64_t>> mdat_ranges;
  for (const engine::Mp4Box& box : *top) {
    if (box.type == "mdat") mdat_ranges.emplace_back(box.offset, box.offset + box.size);
  }
  size_t packet = 0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (int i = 0; i < blocks[b]; ++i, ++packet) {
      const DemuxedPacket& p = video->packets[packet];
      EXPECT_GE(static_cast<uint64_t>(p.pos), mdat_ranges[b].first) << packet;
      EXPECT_LT(static_cast<uint64_t>(p.pos), mdat_ranges[b].second) << packet;
      EXPECT_EQ(p.key, i == 0) << "block " << b << " frame " << i;
    }
  }
}

TEST(Fmp4EncoderTest, LatentFrameFragmentsCarryTheSameFramesWithKeyframesOnlyAtBlockStarts) {
  const std::vector<int> blocks = {17, 16, 16};
  absl::StatusOr<EncodedStream> per_block = EncodeTestStream(SmallSettings(), blocks);
  absl::StatusOr<EncodedStream> per_latent = EncodeTestStream(SmallSettings(), blocks, 4);
  ASSERT_TRUE(per_block.ok()) << per_block.status();
  ASSERT_TRUE(per_latent.ok()) << per_latent.status();
  // 17 = 1 + 4 x 4, then 4 x 4 twice: 13 fragments, keyframes at 0, 5 and 9.
  ASSERT_EQ(per_latent->fragments.size(), 13u);
  std::vector<int> sizes, keyframes;
  for (size_t i = 0; i < per_latent->fragments.size(); ++i) {
    const engine::EncodedFragment& f = per_latent->fragments[i];
    sizes.push_back(f.num_frames);
    if (f.keyframe) keyframes.push_back(static_cast<int>(i));
    EXPECT_EQ(f.block_index, i < 5 ? 0 : i < 9 ? 1 : 2) << i;
    auto boxes = engine::ParseMp4Boxes(f.bytes);
    ASSERT_TRUE(boxes.ok());
    EXPECT_THAT(engine::Mp4BoxTypes(*boxes), ElementsAre("moof", "mdat")) << i;
  }
  EXPECT_THAT(sizes, ElementsAre(1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4));
  EXPECT_THAT(keyframes, ElementsAre(0, 5, 9));

  absl::StatusOr<DecodedVideo> a = DemuxAndDecode(Concatenate(*per_block));
  absl::StatusOr<DecodedVideo> b = DemuxAndDecode(Concatenate(*per_latent));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rgb_frames.size(), 49u);
  // The encoder sees the same frames and frame types: the decoded video is identical.
  EXPECT_EQ(b->rgb_frames, a->rgb_frames);
  ASSERT_EQ(b->packets.size(), a->packets.size());
  for (size_t i = 0; i < b->packets.size(); ++i) {
    EXPECT_EQ(b->packets[i].key, i == 0 || i == 17 || i == 33) << i;
    EXPECT_EQ(b->packets[i].pts, a->packets[i].pts) << i;
  }
  // A late viewer joins at a block start: from fragment 5 on it decodes on its own.
  std::string late = per_latent->init_segment;
  for (size_t i = 5; i < per_latent->fragments.size(); ++i) late += per_latent->fragments[i].bytes;
  absl::StatusOr<DecodedVideo> joined = DemuxAndDecode(late);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->rgb_frames.size(), 32u);
}

TEST(Fmp4EncoderTest, TheFirstFragmentMustStartABlock) {
  auto encoder = Fmp4Encoder::Create(SmallSettings());
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  const EncoderSettings s = SmallSettings();
  std::vector<uint8_t> frames = engine::RenderTestPatternBlock(s.width, s.height, 0, 4);
  auto bad = (*encoder)->EncodeFragment(frames, 4, /*starts_block=*/false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("starts_block"), std::string::npos);
  EXPECT_TRUE((*encoder)->EncodeFragment(frames, 4, /*starts_block=*/true).ok());  // usable
}

TEST(Fmp4EncoderTest, DecodedFramesMatchTheInputAbove35Db) {
  const std::vector<int> blocks = {17, 16, 16};
  EncoderSettings settings;
  settings.width = 320;
  settings.height = 192;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, blocks);
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  ASSERT_EQ(video->rgb_frames.size(), stream->input_frames.size());
  double min_psnr = 1e9, sum_psnr = 0;
  for (size_t i = 0; i < video->rgb_frames.size(); ++i) {
    const double psnr = Psnr(video->rgb_frames[i], stream->input_frames[i]);
    EXPECT_GE(psnr, kMinPsnrDb) << "frame " << i;
    min_psnr = std::min(min_psnr, psnr);
    sum_psnr += psnr;
  }
  // A frame compared with the next one scores far lower: the check is frame-accurate.
  EXPECT_LT(Psnr(video->rgb_frames[5], stream->input_frames[6]), min_psnr - 3.0);
  std::printf("PSNR over %zu frames: min %.2f dB, mean %.2f dB\n", video->rgb_frames.size(),
              min_psnr, sum_psnr / video->rgb_frames.size());
}

TEST(Fmp4EncoderTest, LateJoinerDecodesFromAnyBlock) {
  const std::vector<int> blocks = {17, 16, 16, 16};
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(SmallSettings(), blocks);
  ASSERT_TRUE(stream.ok()) << stream.status();
  for (size_t k = 1; k < blocks.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "joining at block " << k);
    absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream, k));
    ASSERT_TRUE(video.ok()) << video.status();
    const int64_t first_frame = stream->fragments[k].first_frame;
    const size_t expected = stream->input_frames.size() - static_cast<size_t>(first_frame);
    ASSERT_EQ(video->rgb_frames.size(), expected);
    ASSERT_EQ(video->packets.size(), expected);
    EXPECT_TRUE(video->packets.front().key);
    const int64_t ticks_per_frame = video->time_base_den / (16 * video->time_base_num);
    for (size_t i = 0; i < expected; ++i) {
      // Absolute session timestamps survive the join (tfdt).
      EXPECT_EQ(video->frame_pts[i], (first_frame + static_cast<int64_t>(i)) * ticks_per_frame);
      EXPECT_GE(Psnr(video->rgb_frames[i], stream->input_frames[first_frame + i]), kMinPsnrDb)
          << "frame " << first_frame + i;
    }
  }
}

TEST(Fmp4EncoderTest, DimensionsThatAreNotMultiplesOf16) {
  EncoderSettings settings;
  settings.width = 202;
  settings.height = 114;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, {5, 4});
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->width, 202);
  EXPECT_EQ(video->height, 114);
  ASSERT_EQ(video->rgb_frames.size(), 9u);
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_GE(Psnr(video->rgb_frames[i], stream->input_frames[i]), kMinPsnrDb) << i;
  }
}

TEST(Fmp4EncoderTest, OtherFrameRatesKeepExactTimestamps) {
  EncoderSettings settings = SmallSettings();
  settings.fps = 24;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, {7, 6});
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_DOUBLE_EQ(stream->fragments[1].start_seconds, 7 / 24.0);
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  ASSERT_EQ(video->packets.size(), 13u);
  ASSERT_EQ(video->time_base_den % (24 * video->time_base_num), 0);
  const int64_t ticks_per_frame = video->time_base_den / (24 * video->time_base_num);
  for (size_t i = 0; i < 13; ++i) {
    EXPECT_EQ(video->packets[i].pts, static_cast<int64_t>(i) * ticks_per_frame);
  }
}

TEST(Fmp4EncoderTest, SingleThreadedEncodingIsDeterministic) {
  EncoderSettings settings = SmallSettings();
  settings.threads = 1;
  absl::StatusOr<EncodedStream> a = EncodeTestStream(settings, {9, 8});
  absl::StatusOr<EncodedStream> b = EncodeTestStream(settings, {9, 8});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->init_segment, b->init_segment);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(a->fragments[i].bytes, b->fragments[i].bytes) << i;
}

TEST(Fmp4EncoderTest, MultiThreadedEncodingHoldsNoFrameAcrossBlocks) {
  // Slice threads: a 2-thread encoder still returns every frame within its block (EncodeBlock
  // fails with Internal otherwise).
  EncoderSettings settings;
  settings.width = 320;
  settings.height = 192;
  settings.threads = 2;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, {9, 8, 8});
  ASSERT_TRUE(stream.ok()) << stream.status();
  absl::StatusOr<DecodedVideo> video = DemuxAndDecode(Concatenate(*stream));
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->rgb_frames.size(), 25u);
}

}  // namespace
}  // namespace longsana::testing
