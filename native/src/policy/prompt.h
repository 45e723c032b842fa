// pi0.5 prompt construction and SentencePiece tokenisation (openpi PaligemmaTokenizer semantics).
// With discrete state input (pi0.5 default) the normalised state is written into the prompt as
// 256-bin integers: "Task: <prompt>, State: 12 200 ...;\nAction: ". Without it, openpi's pi0
// format is used: BOS + prompt + "\n".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace vla_edge::policy {

// Python's str.strip() (Unicode whitespace) of a UTF-8 prompt, then "_" and "\n" -> " ".
// FieldError("prompt", ...) if the text is not valid UTF-8.
std::string clean_prompt(const std::string& prompt);
// Whether the prompt has any non-whitespace character (Python: prompt.strip() != "").
bool has_text(const std::string& prompt);

class PromptTokenizer {
  public:
    // PackFault naming model_path when it is not a loadable SentencePiece model or its BOS id
    // differs from the model config's.
    PromptTokenizer(const std::string& model_path, int max_len, bool discrete_state, int bos_id);
    ~PromptTokenizer();
    PromptTokenizer(const PromptTokenizer&) = delete;
    PromptTokenizer& operator=(const PromptTokenizer&) = delete;

    int vocab_size() const;
    // Token ids (BOS first, no padding); FieldError("prompt") when longer than max_len,
    // FieldError("state") when the pack needs a state and there is none (normalized == nullptr).
    std::vector<int32_t> encode(const std::string& prompt, const float* normalized, size_t n_state) const;

  private:
    std::vector<int> ids(const std::string& text) const;
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string path_;
    int max_len_;
    bool discrete_state_;
};

}  // namespace vla_edge::policy
