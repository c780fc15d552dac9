#include "engine/text/tokenizer.h"

#include <filesystem>

#include "engine/common/str_util.h"
#include "engine/text/sentencepiece_model.h"
#include "engine/common/utf8.h"

namespace longsana::engine {
namespace fs = std::filesystem;

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& tokenizer_dir,
                                                           const TokenizerConfig& config) {
  const fs::path dir(tokenizer_dir);
  const std::string path = (dir / kModelFile).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (fs::exists(dir / "tokenizer.json", ec)) {
      return absl::NotFoundError(
          StrCat(path,
                 " not found: the tokenizer folder holds only tokenizer.json (a fast "
                 "tokenizer), which this server cannot read; add the SentencePiece "
                 "model tokenizer.model from the original gemma-2-2b-it repository"));
    }
    return absl::NotFoundError(StrCat(path, " not found (the Gemma SentencePiece model)"));
  }
  std::string error;
  std::unique_ptr<SentencePieceModel> model = SentencePieceModel::Load(path, &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        StrCat(path, ": not a readable SentencePiece model: ", error));
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->model_path_ = path;
  t->vocab_size_ = model->vocab_size();
  t->add_bos_ = config.add_bos_token;
  struct Special {
    std::string_view field;
    const std::string& piece;
    int64_t* id;
  };
  for (const Special& s : {Special{"bos_token", config.bos_token, &t->bos_id_},
                           Special{"eos_token", config.eos_token, &t->eos_id_},
                           Special{"pad_token", config.pad_token, &t->pad_id_},
                           Special{"unk_token", config.unk_token, &t->unk_id_}}) {
    const int id = model->PieceToId(s.piece);
    if (id < 0) {
      return absl::InvalidArgumentError(StrCat(path, ": ", s.field, " '", s.piece,
                                               "' (tokenizer_config.json) is not in the "
                                               "vocabulary"));
    }
    *s.id = id;
  }
  t->model_ = std::move(model);
  return t;
}

absl::StatusOr<std::vector<int64_t>> Tokenizer::Encode(std::string_view text) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError("prompt: text is not valid UTF-8");
  }
  std::vector<int> pieces;
  std::string error;
  if (!model_->Encode(text, &pieces, &error)) {
    return absl::InternalError(StrCat(model_path_, ": SentencePiece encode failed: ", error));
  }
  std::vector<int64_t> ids;
  ids.reserve(pieces.size() + 1);
  if (add_bos_) ids.push_back(bos_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::vector<std::string> Tokenizer::IdsToPieces(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    out.push_back(id >= 0 && id < vocab_size_ ? model_->IdToPiece(static_cast<int>(id)) : "");
  }
  return out;
}

}  // namespace longsana::engine
