// No Abseil header may be included here (see sentencepiece_model.h).
//
// Why dlopen: Debian's libsentencepiece.so bundles its own, older protobuf-lite and exports
// every symbol of it. Linked normally into a process that also loads libprotobuf.so (LibTorch
// and gRPC do), one library's protobuf calls bind to the other's incompatible copy and the
// process crashes during static initialisation. So the library is never linked: it is
// dlopen'ed with RTLD_LOCAL (its symbols stay out of the global scope, so libprotobuf keeps
// its own) and RTLD_DEEPBIND (its own references bind to its own copy first).
// SentencePieceProcessor's methods we use are virtual (called through the object's vtable);
// the few non-virtual ones (constructor, util::Status accessors and destructor) are resolved
// with dlsym by their Itanium-ABI names.
#include "engine/text/sentencepiece_model.h"

#include <dlfcn.h>
#include <sentencepiece_processor.h>

#include <mutex>
#include <new>

namespace longsana::engine {
namespace {

using sentencepiece::SentencePieceProcessor;
using sentencepiece::util::Status;

struct Library {
  void* handle = nullptr;
  std::string error;
  void (*construct)(SentencePieceProcessor*) = nullptr;
  void (*destroy_status)(Status*) = nullptr;
  const char* (*status_message)(const Status*) = nullptr;
};

const Library& GetLibrary() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    const int flags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
    for (const char* name : {LONGSANA_SENTENCEPIECE_LIBRARY, "libsentencepiece.so.0"}) {
      if (name[0] == '\0') continue;
      lib.handle = ::dlopen(name, flags);
      if (lib.handle != nullptr) break;
      const char* e = ::dlerror();
      lib.error += std::string(lib.error.empty() ? "" : "; ") + (e != nullptr ? e : name);
    }
    if (lib.handle == nullptr) return;
    auto sym = [](const char* name) {
      void* p = ::dlsym(lib.handle, name);
      if (p == nullptr)
        lib.error += std::string(lib.error.empty() ? "" : "; ") + "no symbol " + name;
      return p;
    };
    lib.construct = reinterpret_cast<void (*)(SentencePieceProcessor*)>(
        sym("_ZN13sentencepiece22SentencePieceProcessorC1Ev"));
    lib.destroy_status =
        reinterpret_cast<void (*)(Status*)>(sym("_ZN13sentencepiece4util6StatusD1Ev"));
    lib.status_message = reinterpret_cast<const char* (*)(const Status*)>(
        sym("_ZNK13sentencepiece4util6Status13error_messageEv"));
    if (lib.construct == nullptr || lib.destroy_status == nullptr ||
        lib.status_message == nullptr) {
      lib.handle = nullptr;
    }
  });
  return lib;
}

// Runs `call` (a virtual method returning util::Status by value) and returns "" on success or
// the error message. The Status lives in a union so that the compiler emits no call to the
// library's out-of-line destructor; we call it through dlsym instead.
template <typename Call>
std::string StatusMessage(const Library& lib, Call&& call) {
  union Slot {
    Status status;
    Slot() {}
    ~Slot() {}
  } slot;
  ::new (&slot.status) Status(call());  // guaranteed copy elision: no copy constructor
  std::string message;
  if (!slot.status.ok()) {
    const char* m = lib.status_message(&slot.status);
    message = (m != nullptr && m[0] != '\0') ? m : "unknown SentencePiece error";
  }
  lib.destroy_status(&slot.status);
  return message;
}

}  // namespace

SentencePieceModel::SentencePieceModel() = default;

SentencePieceModel::~SentencePieceModel() {
  // Virtual deleting destructor: dispatched through the library's vtable.
  delete processor_;
}

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  const Library& lib = GetLibrary();
  if (lib.handle == nullptr) {
    *error = "cannot load libsentencepiece: " + lib.error;
    return nullptr;
  }
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel());
  void* memory = ::operator new(sizeof(SentencePieceProcessor));
  lib.construct(static_cast<SentencePieceProcessor*>(memory));
  model->processor_ = static_cast<SentencePieceProcessor*>(memory);
  const std::string message =
      StatusMessage(lib, [&] { return model->processor_->Load(std::string_view(path)); });
  if (!message.empty()) {
    *error = message;
    return nullptr;
  }
  return model;
}

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  ids->clear();
  const std::string message =
      StatusMessage(GetLibrary(), [&] { return processor_->Encode(text, ids); });
  if (!message.empty()) {
    *error = message;
    return false;
  }
  return true;
}

int SentencePieceModel::vocab_size() const { return processor_->GetPieceSize(); }

int SentencePieceModel::PieceToId(std::string_view piece) const {
  const int id = processor_->PieceToId(piece);
  // PieceToId maps unknown pieces to the unk id; only an exact round trip counts.
  if (id < 0 || id >= processor_->GetPieceSize() || processor_->IdToPiece(id) != piece) return -1;
  return id;
}

std::string SentencePieceModel::IdToPiece(int id) const {
  if (id < 0 || id >= processor_->GetPieceSize()) return "";
  return processor_->IdToPiece(id);
}

}  // namespace longsana::engine
