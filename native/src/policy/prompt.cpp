#include "prompt.h"

#include <sentencepiece_processor.h>

#include "errors.h"
#include "normalize.h"

namespace vla_edge::policy {
namespace {

// Decode one UTF-8 code point at s[i]; returns its length, 0 if the bytes are not valid UTF-8.
size_t decode(const std::string& s, size_t i, uint32_t* cp) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    size_t len;
    uint32_t v;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; }
    else return 0;
    if (i + len > s.size()) return 0;
    for (size_t k = 1; k < len; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return 0;
        v = (v << 6) | (b(i + k) & 0x3F);
    }
    static const uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for_len[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

// Python's str.isspace() set.
bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

struct CodePoint {
    size_t start, len;
    uint32_t value;
};

std::vector<CodePoint> code_points(const std::string& s) {
    std::vector<CodePoint> out;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        const size_t len = decode(s, i, &cp);
        if (len == 0) throw FieldError("prompt", "UTF-8 text", "invalid UTF-8 at byte " + std::to_string(i));
        out.push_back({i, len, cp});
        i += len;
    }
    return out;
}

}  // namespace

bool has_text(const std::string& prompt) {
    for (const CodePoint& c : code_points(prompt)) {
        if (!is_space(c.value)) return true;
    }
    return false;
}

std::string clean_prompt(const std::string& prompt) {
    const std::vector<CodePoint> cps = code_points(prompt);
    size_t lo = 0, hi = cps.size();
    while (lo < hi && is_space(cps[lo].value)) ++lo;
    while (hi > lo && is_space(cps[hi - 1].value)) --hi;
    std::string out;
    for (size_t k = lo; k < hi; ++k) {
        const uint32_t v = cps[k].value;
        if (v == '_' || v == '\n') out.push_back(' ');
        else out.append(prompt, cps[k].start, cps[k].len);
    }
    return out;
}

PromptTokenizer::PromptTokenizer(const std::string& model_path, int max_len, bool discrete_state, int bos_id)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model_path), max_len_(max_len),
      discrete_state_(discrete_state) {
    const auto status = sp_->Load(model_path);
    if (!status.ok()) throw PackFault(model_path, "not a loadable SentencePiece model: " + status.ToString());
    if (sp_->bos_id() != bos_id) {
        throw PackFault(model_path, "BOS id is " + std::to_string(sp_->bos_id()) + ", the model config expects " +
                                        std::to_string(bos_id));
    }
}

PromptTokenizer::~PromptTokenizer() = default;

int PromptTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::vector<int> PromptTokenizer::ids(const std::string& text) const {
    std::vector<int> out;
    const auto status = sp_->Encode(text, &out);
    if (!status.ok()) throw std::runtime_error(path_ + ": tokenisation failed: " + status.ToString());
    return out;
}

std::vector<int32_t> PromptTokenizer::encode(const std::string& prompt, const float* normalized,
                                             size_t n_state) const {
    const std::string cleaned = clean_prompt(prompt);
    std::vector<int32_t> tokens{static_cast<int32_t>(sp_->bos_id())};
    if (discrete_state_) {
        if (normalized == nullptr) throw FieldError("state", "a state vector (pack uses discrete state input)", "None");
        std::string state;
        const std::vector<double> wide(normalized, normalized + n_state);
        for (int bin : discretize_state(wide.data(), n_state)) state += (state.empty() ? "" : " ") + std::to_string(bin);
        for (int id : ids("Task: " + cleaned + ", State: " + state + ";\nAction: ")) tokens.push_back(id);
    } else {
        for (int id : ids(cleaned)) tokens.push_back(id);
        for (int id : ids("\n")) tokens.push_back(id);
    }
    if (static_cast<int>(tokens.size()) > max_len_) {
        throw FieldError("prompt", "at most " + std::to_string(max_len_) + " tokens including state tokens",
                         std::to_string(tokens.size()) + " tokens");
    }
    return tokens;
}

}  // namespace vla_edge::policy
