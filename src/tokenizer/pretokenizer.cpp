#include "tokenizer/pretokenizer.h"

#include <utility>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace tierlm::tokenizer {
namespace {

// ---------------------------------------------------------------------------------------
// Character classes.

bool IsSpace(uint32_t c) { return IsWhitespace(c); }                       // \s
bool IsCrLf(uint32_t c) { return c == '\r' || c == '\n'; }                 // [\r\n]
bool IsAsciiDigit(uint32_t c) { return c >= '0' && c <= '9'; }             // [0-9]
// [^\s\p{L}\p{N}]
bool IsOther(uint32_t c) { return (CodepointFlags(c) & (kWhitespace | kLetter | kNumber)) == 0; }
uint32_t AsciiLower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

struct CpRange {
  uint32_t first, last;
};
template <size_t N>
bool InRanges(uint32_t c, const CpRange (&ranges)[N]) {
  for (const CpRange& r : ranges) {
    if (c < r.first) return false;  // ranges are sorted
    if (c <= r.last) return true;
  }
  return false;
}

// The letter class of the deepseek-llm regex, [A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃] (cased letters).
constexpr CpRange kDeepseekLetters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},
    {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},
    {0x376, 0x377},     {0x37B, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},
    {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},   {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},   {0x2107, 0x2107},
    {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},
    {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},
    {0xA771, 0xA787},   {0xA78B, 0xA78E},   {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},
    {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
// [!-/:-~！-／：-～‘-‟　-。] (deepseek-llm punctuation; note :-~ spans ASCII letters too)
constexpr CpRange kDeepseekPunct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};
// [一-龥ࠀ-一가-퟿] (CJK and Hangul; ࠀ-一 is U+0800-U+4E00)
constexpr CpRange kDeepseekCjk[] = {{0x800, 0x4E00}, {0x4E00, 0x9FA5}, {0xAC00, 0xD7FF}};

// llama.cpp maps non-ASCII whitespace to U+000B before running a bracket-class regex,
// so such a character is \s and never a member of an explicit class (e.g. U+3000).
bool IsDeepseekLetter(uint32_t c) { return !IsSpace(c) && InRanges(c, kDeepseekLetters); }
bool IsDeepseekPunct(uint32_t c) { return !IsSpace(c) && InRanges(c, kDeepseekPunct); }
bool IsDeepseekCjk(uint32_t c) { return !IsSpace(c) && InRanges(c, kDeepseekCjk); }
// [\p{P}\$\+<=>\^~\|]
bool IsDefaultPunct(uint32_t c) {
  return IsPunctuation(c) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
         c == '~' || c == '|';
}

// ---------------------------------------------------------------------------------------
// Matchers. A matcher returns the length in codepoints of the match that starts at `p`
// within the piece [p, end) of `c` (the piece is all the regex sees: `$` and lookahead
// stop at `end`), or 0 when the regex does not match at `p`.

using Matcher = size_t (*)(const uint32_t* c, size_t p, size_t end);

// Length of the run of codepoints from p satisfying `pred`.
template <typename Pred>
size_t RunLength(const uint32_t* c, size_t p, size_t end, Pred pred) {
  size_t q = p;
  while (q < end && pred(c[q])) ++q;
  return q - p;
}

// `<prefix>?[class]+` where <prefix> is a single codepoint class: the prefix is taken
// only when the class follows it (greedy `?` backtracks otherwise).
template <typename Prefix, typename Class>
size_t OptionalPrefixThenRun(const uint32_t* c, size_t p, size_t end, Prefix prefix, Class cls) {
  if (prefix(c[p]) && p + 1 < end && cls(c[p + 1])) return 1 + RunLength(c, p + 1, end, cls);
  return RunLength(c, p, end, cls);
}

// `\s+(?!\S)|\s+` at a whitespace run of n codepoints: all of it at the end of the piece,
// else all but the last (which then prefixes the next word), but at least one.
size_t WhitespaceRun(const uint32_t* c, size_t p, size_t end) {
  const size_t n = RunLength(c, p, end, IsSpace);
  if (n == 0) return 0;
  if (p + n == end || n == 1) return n;
  return n - 1;
}

// 's|'t|'re|'ve|'m|'ll|'d  (case-insensitive when `fold` is set)
size_t Contraction(const uint32_t* c, size_t p, size_t end, bool fold) {
  if (c[p] != '\'' || p + 1 >= end) return 0;
  auto lc = [&](size_t i) { return fold ? AsciiLower(c[i]) : c[i]; };
  const uint32_t a = lc(p + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (p + 2 >= end) return 0;
  const uint32_t b = lc(p + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (llama.cpp's string lacks the final |\s+ but its hand-written matcher has it, and the
// alternatives cover every codepoint either way.)
size_t MatchGpt2(const uint32_t* c, size_t p, size_t end) {
  if (size_t n = Contraction(c, p, end, /*fold=*/false)) return n;
  auto is_space_char = [](uint32_t x) { return x == ' '; };
  if (size_t n = OptionalPrefixThenRun(c, p, end, is_space_char, IsLetter)) return n;
  if (size_t n = OptionalPrefixThenRun(c, p, end, is_space_char, IsNumber)) return n;
  if (size_t n = OptionalPrefixThenRun(c, p, end, is_space_char, IsOther)) return n;
  return WhitespaceRun(c, p, end);
}

// Llama 3 (max_digits 3) and Qwen2 (max_digits 1):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// (Qwen2 has \p{N} in place of \p{N}{1,3}.)
template <size_t kMaxDigits>
size_t MatchLlama3Family(const uint32_t* c, size_t p, size_t end) {
  if (size_t n = Contraction(c, p, end, /*fold=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  auto not_crlf_letter_number = [](uint32_t x) { return !IsCrLf(x) && !IsLetter(x) && !IsNumber(x); };
  if (size_t n = OptionalPrefixThenRun(c, p, end, not_crlf_letter_number, IsLetter)) return n;
  // \p{N}{1,kMaxDigits}
  if (IsNumber(c[p])) {
    size_t n = 1;
    while (n < kMaxDigits && p + n < end && IsNumber(c[p + n])) ++n;
    return n;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  {
    size_t q = p;
    if (c[q] == ' ' && q + 1 < end && IsOther(c[q + 1])) ++q;
    const size_t others = RunLength(c, q, end, IsOther);
    if (others > 0) {
      q += others;
      q += RunLength(c, q, end, IsCrLf);
      return q - p;
    }
  }
  // \s*[\r\n]+ : through the last CR/LF of the whitespace run
  {
    const size_t n = RunLength(c, p, end, IsSpace);
    for (size_t i = n; i > 0; --i) {
      if (IsCrLf(c[p + i - 1])) return i;
    }
  }
  return WhitespaceRun(c, p, end);
}

// Starcoder's and deepseek-coder's \p{N}: one digit.
size_t MatchOneNumber(const uint32_t* c, size_t p, size_t) { return IsNumber(c[p]) ? 1 : 0; }
// \p{N}+
size_t MatchNumbers(const uint32_t* c, size_t p, size_t end) { return RunLength(c, p, end, IsNumber); }
// [\r\n]
size_t MatchCrLf(const uint32_t* c, size_t p, size_t) { return IsCrLf(c[p]) ? 1 : 0; }
// \s?[A-Za-zµÀ-Ö...]+
size_t MatchDeepseekLetters(const uint32_t* c, size_t p, size_t end) {
  return OptionalPrefixThenRun(c, p, end, IsSpace, IsDeepseekLetter);
}
// \s?[!-/:-~！-／：-～‘-‟　-。]+
size_t MatchDeepseekPunct(const uint32_t* c, size_t p, size_t end) {
  return OptionalPrefixThenRun(c, p, end, IsSpace, IsDeepseekPunct);
}
// \s+$ -- the whitespace run that ends the piece. (ApplyStage splits it off directly:
// trying this matcher at every position of a long run would be quadratic.)
size_t MatchTrailingSpace(const uint32_t* c, size_t p, size_t end) {
  const size_t n = RunLength(c, p, end, IsSpace);
  return p + n == end ? n : 0;
}
// [一-龥ࠀ-一가-퟿]+
size_t MatchCjk(const uint32_t* c, size_t p, size_t end) { return RunLength(c, p, end, IsDeepseekCjk); }
// \s?\p{L}+
size_t MatchSpaceLetters(const uint32_t* c, size_t p, size_t end) {
  return OptionalPrefixThenRun(c, p, end, IsSpace, IsLetter);
}
// \s?\p{P}+
size_t MatchSpacePunct(const uint32_t* c, size_t p, size_t end) {
  return OptionalPrefixThenRun(c, p, end, IsSpace, IsPunctuation);
}
// [\p{P}\$\+<=>\^~\|]+
size_t MatchDefaultPunct(const uint32_t* c, size_t p, size_t end) {
  return RunLength(c, p, end, IsDefaultPunct);
}
// [0-9][0-9][0-9]
size_t MatchThreeDigits(const uint32_t* c, size_t p, size_t end) {
  return p + 3 <= end && IsAsciiDigit(c[p]) && IsAsciiDigit(c[p + 1]) && IsAsciiDigit(c[p + 2]) ? 3 : 0;
}

// Splits every piece in `lengths` (codepoint lengths covering `c`) by `match`, keeping
// the text between matches as pieces of its own.
std::vector<size_t> ApplyStage(const uint32_t* c, const std::vector<size_t>& lengths, Matcher match) {
  std::vector<size_t> out;
  out.reserve(lengths.size() * 2);
  size_t start = 0;
  for (size_t len : lengths) {
    const size_t end = start + len;
    if (match == &MatchTrailingSpace) {
      size_t t = end;
      while (t > start && IsSpace(c[t - 1])) --t;
      if (t > start) out.push_back(t - start);
      if (end > t) out.push_back(end - t);
      start = end;
      continue;
    }
    size_t gap_start = start;
    size_t p = start;
    while (p < end) {
      const size_t n = match(c, p, end);
      if (n == 0) {
        ++p;
        continue;
      }
      if (p > gap_start) out.push_back(p - gap_start);
      out.push_back(n);
      p += n;
      gap_start = p;
    }
    if (end > gap_start) out.push_back(end - gap_start);
    start = end;
  }
  return out;
}

struct Stages {
  const Matcher* matchers;
  size_t count;
};

Stages StagesOf(PreTokenizerKind kind) {
  static constexpr Matcher kGpt2[] = {MatchGpt2};
  static constexpr Matcher kLlama3[] = {MatchLlama3Family<3>};
  static constexpr Matcher kQwen2[] = {MatchLlama3Family<1>};
  static constexpr Matcher kStarcoder[] = {MatchOneNumber, MatchGpt2};
  static constexpr Matcher kDeepseekLlm[] = {MatchCrLf,          MatchDeepseekLetters, MatchDeepseekPunct,
                                             MatchTrailingSpace, MatchCjk,             MatchNumbers};
  static constexpr Matcher kDeepseekCoder[] = {MatchCrLf, MatchSpaceLetters, MatchSpacePunct, MatchCjk,
                                               MatchOneNumber};
  static constexpr Matcher kDefault[] = {MatchDefaultPunct, MatchGpt2, MatchNumbers, MatchThreeDigits};
  switch (kind) {
    case PreTokenizerKind::kGpt2: return {kGpt2, std::size(kGpt2)};
    case PreTokenizerKind::kLlama3: return {kLlama3, std::size(kLlama3)};
    case PreTokenizerKind::kQwen2: return {kQwen2, std::size(kQwen2)};
    case PreTokenizerKind::kStarcoder: return {kStarcoder, std::size(kStarcoder)};
    case PreTokenizerKind::kDeepseekLlm: return {kDeepseekLlm, std::size(kDeepseekLlm)};
    case PreTokenizerKind::kDeepseekCoder: return {kDeepseekCoder, std::size(kDeepseekCoder)};
    case PreTokenizerKind::kDefault: return {kDefault, std::size(kDefault)};
  }
  return {kDefault, std::size(kDefault)};
}

}  // namespace

Result<PreTokenizerKind> PreTokenizerKindFromName(std::string_view name) {
  struct Entry {
    std::string_view name;
    PreTokenizerKind kind;
  };
  static constexpr Entry kNames[] = {
      {"", PreTokenizerKind::kDefault},
      {"default", PreTokenizerKind::kDefault},
      {"gpt-2", PreTokenizerKind::kGpt2},
      {"phi-2", PreTokenizerKind::kGpt2},
      {"mpt", PreTokenizerKind::kGpt2},
      {"olmo", PreTokenizerKind::kGpt2},
      {"jais", PreTokenizerKind::kGpt2},
      {"trillion", PreTokenizerKind::kGpt2},
      {"roberta-bpe", PreTokenizerKind::kGpt2},
      {"gigachat", PreTokenizerKind::kGpt2},
      {"jina-es", PreTokenizerKind::kGpt2},
      {"jina-de", PreTokenizerKind::kGpt2},
      {"jina-v1-en", PreTokenizerKind::kGpt2},
      {"jina-v2-es", PreTokenizerKind::kGpt2},
      {"jina-v2-de", PreTokenizerKind::kGpt2},
      {"jina-v2-code", PreTokenizerKind::kGpt2},
      {"llama3", PreTokenizerKind::kLlama3},
      {"llama-v3", PreTokenizerKind::kLlama3},
      {"llama-bpe", PreTokenizerKind::kLlama3},
      {"falcon3", PreTokenizerKind::kLlama3},
      {"falcon-h1", PreTokenizerKind::kLlama3},
      {"pixtral", PreTokenizerKind::kLlama3},
      {"midm-2.0", PreTokenizerKind::kLlama3},
      {"lfm2", PreTokenizerKind::kLlama3},
      {"dbrx", PreTokenizerKind::kLlama3},
      {"smaug-bpe", PreTokenizerKind::kLlama3},
      {"qwen2", PreTokenizerKind::kQwen2},
      {"deepseek-r1-qwen", PreTokenizerKind::kQwen2},
      {"stablelm2", PreTokenizerKind::kQwen2},
      {"megrez", PreTokenizerKind::kQwen2},
      {"deepseek-llm", PreTokenizerKind::kDeepseekLlm},
      {"deepseek-coder", PreTokenizerKind::kDeepseekCoder},
      {"starcoder", PreTokenizerKind::kStarcoder},
      {"refact", PreTokenizerKind::kStarcoder},
      {"command-r", PreTokenizerKind::kStarcoder},
      {"smollm", PreTokenizerKind::kStarcoder},
      {"codeshell", PreTokenizerKind::kStarcoder},
      {"exaone", PreTokenizerKind::kStarcoder},
      {"minerva-7b", PreTokenizerKind::kStarcoder},
  };
  for (const Entry& e : kNames) {
    if (e.name == name) return e.kind;
  }
  return Status::Unsupported("unknown pre-tokenizer '" + std::string(name) + "'");
}

const char* PreTokenizerKindName(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kDefault: return "default";
    case PreTokenizerKind::kGpt2: return "gpt-2";
    case PreTokenizerKind::kLlama3: return "llama3";
    case PreTokenizerKind::kQwen2: return "qwen2";
    case PreTokenizerKind::kDeepseekLlm: return "deepseek-llm";
    case PreTokenizerKind::kDeepseekCoder: return "deepseek-coder";
    case PreTokenizerKind::kStarcoder: return "starcoder";
  }
  return "?";
}

std::vector<size_t> PreTokenizer::SplitCodepoints(const std::vector<uint32_t>& cpts) const {
  std::vector<size_t> lengths;
  if (cpts.empty()) return lengths;
  lengths.push_back(cpts.size());
  const Stages stages = StagesOf(kind_);
  for (size_t i = 0; i < stages.count; ++i) lengths = ApplyStage(cpts.data(), lengths, stages.matchers[i]);
  return lengths;
}

std::vector<std::string> PreTokenizer::Split(std::string_view text) const {
  const std::vector<uint32_t> cpts = DecodeUtf8Lenient(text);
  const std::vector<size_t> lengths = SplitCodepoints(cpts);
  std::vector<std::string> words;
  words.reserve(lengths.size());
  size_t start = 0;
  for (size_t len : lengths) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) AppendUtf8(cpts[i], &w);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

}  // namespace tierlm::tokenizer
