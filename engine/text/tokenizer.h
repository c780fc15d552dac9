// The Gemma tokenizer (model.md §2.2): SentencePiece from `tokenizer/tokenizer.model`, BOS
// prepended, no EOS, ids as transformers' slow GemmaTokenizer produces them. Torch-free.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/models/tokenizer_config.h"

namespace longsana::engine {

class SentencePieceModel;

// Immutable after Load; every method is const and thread-safe.
class Tokenizer {
 public:
  static constexpr const char* kModelFile = "tokenizer.model";

  // Loads `tokenizer_dir`/tokenizer.model and resolves the special tokens of `config`
  // (bos/eos/pad/unk piece names) to ids.
  // Errors: NotFound naming tokenizer.model when it is absent (also when the folder holds
  // only a fast-tokenizer `tokenizer.json`, which this server cannot read); InvalidArgument
  // when the file is not a SentencePiece model or a special token is not in its vocabulary.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& tokenizer_dir,
                                                         const TokenizerConfig& config);
  ~Tokenizer();

  // [BOS] (when config.add_bos_token) + the SentencePiece ids of `text`; never EOS.
  // The text is taken literally: special-token strings such as "<bos>" inside it are
  // tokenised as text, not mapped to their ids (transformers would split them out).
  // InvalidArgument when `text` is not valid UTF-8 (a Python str never is).
  absl::StatusOr<std::vector<int64_t>> Encode(std::string_view text) const;

  // The piece strings of `ids` (for logs and tests), e.g. {"<bos>", "A", "▁red"}.
  std::vector<std::string> IdsToPieces(const std::vector<int64_t>& ids) const;

  int64_t vocab_size() const { return vocab_size_; }
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  bool add_bos() const { return add_bos_; }
  const std::string& model_path() const { return model_path_; }

 private:
  Tokenizer() = default;

  std::unique_ptr<SentencePieceModel> model_;
  std::string model_path_;
  int64_t vocab_size_ = 0;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  int64_t pad_id_ = -1;
  int64_t unk_id_ = -1;
  bool add_bos_ = true;
};

}  // namespace longsana::engine
