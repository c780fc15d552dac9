// A thin, std-only wrapper around libsentencepiece's SentencePieceProcessor.
//
// Why a separate wrapper: sentencepiece_processor.h (0.1.9x) declares
// `namespace absl { using std::string_view; }`, which collides with Debian's Abseil, whose
// absl::string_view is a class. The translation unit that includes the SentencePiece header
// therefore must not include any Abseil header; this file and its .cc are that unit, and the
// rest of engine/text talks to SentencePiece only through this interface.
// The library is loaded at run time with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), isolated from
// the process's libprotobuf (see the .cc). RTLD_DEEPBIND does not work under AddressSanitizer,
// so code using the tokenizer cannot run in an ASan build.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace longsana::engine {

// Immutable after Load; Encode and the lookups are const and thread-safe (SentencePiece
// documents its encoder as thread-safe).
class SentencePieceModel {
 public:
  // Loads a serialized ModelProto (`tokenizer.model`). On failure (also when
  // libsentencepiece cannot be loaded) returns nullptr and sets *error.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();

  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // The piece ids of `text` (no BOS/EOS: SentencePiece adds none unless the model's
  // extra options say so, and we set none). Returns false and sets *error on failure.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;

  int vocab_size() const;
  // The id of `piece`, or -1 when the vocabulary has no such piece.
  int PieceToId(std::string_view piece) const;
  // The piece of `id` ("" when out of range).
  std::string IdToPiece(int id) const;

 private:
  SentencePieceModel();
  // Owned; constructed and destroyed through the dynamically loaded library.
  sentencepiece::SentencePieceProcessor* processor_ = nullptr;
};

}  // namespace longsana::engine
