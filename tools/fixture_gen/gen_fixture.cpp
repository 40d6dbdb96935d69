// Records what llama.cpp computes for a GGUF model, in the fixture format of
// tests/fixtures/README.md: for each prompt, the prompt's token ids (BOS added as the
// model says), the logits at every prompt position (one batch), then a greedy (argmax)
// continuation, one token per decode, with the top-1 minus top-2 margin of each step.
//
// Built by hand against a llama.cpp build (see README.md); not part of tierlm's build.
//   gen_fixture MODEL.gguf OUT.json N_GREEDY "prompt 1" ["prompt 2" ...]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

namespace {

void AppendJsonString(std::string& out, const std::string& s, bool* lossy) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    // Length of a valid UTF-8 sequence starting here, or 0. Overlong forms (C0, C1, E0 80-9F,
    // F0 80-8F), surrogates (ED A0-BF) and code points past U+10FFFF (F4 90+, F5-FF) are
    // invalid too: JSON parsers refuse them.
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (c == 0xC0 || c == 0xC1 || c > 0xF4) len = 0;
    if (len > 1) {
      if (i + len > s.size()) len = 0;
      for (size_t k = 1; len && k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) len = 0;
    }
    if (len > 2) {
      const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) ||
          (c == 0xF4 && c1 >= 0x90))
        len = 0;
    }
    if (len == 0) {
      out += "\\ufffd";
      *lossy = true;
      ++i;
      continue;
    }
    if (len == 1) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    } else {
      out.append(s, i, len);
    }
    i += len;
  }
  out += '"';
}

void AppendFloat(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);  // float precision; keeps the files small
  out += buf;
}

// Argmax and the margin between the best and second-best logit.
int Argmax(const float* l, int n, double* margin) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (l[i] > l[best]) best = i;
  double second = -1e30;
  for (int i = 0; i < n; ++i)
    if (i != best && l[i] > second) second = l[i];
  *margin = static_cast<double>(l[best]) - second;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf OUT.json N_GREEDY PROMPT...\n", argv[0]);
    return 2;
  }
  const char* model_path = argv[1];
  const char* out_path = argv[2];
  const int n_greedy = std::atoi(argv[3]);

  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(model_path, mp);
  if (!model) {
    std::fprintf(stderr, "%s: llama.cpp could not load the model\n", model_path);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);

  std::string json = "{\"n_vocab\": " + std::to_string(n_vocab) + ",\n \"cases\": [";
  for (int pi = 4; pi < argc; ++pi) {
    const std::string prompt = argv[pi];
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) {
      std::fprintf(stderr, "cannot create a context\n");
      return 1;
    }
    std::vector<llama_token> tokens(prompt.size() + 8);
    const int n_tok = llama_tokenize(vocab, prompt.c_str(), static_cast<int32_t>(prompt.size()), tokens.data(),
                                     static_cast<int32_t>(tokens.size()), /*add_special=*/true,
                                     /*parse_special=*/false);
    if (n_tok <= 0) {
      std::fprintf(stderr, "tokenization failed for '%s'\n", prompt.c_str());
      return 1;
    }
    tokens.resize(static_cast<size_t>(n_tok));

    llama_batch batch = llama_batch_init(n_tok, 0, 1);
    for (int i = 0; i < n_tok; ++i) {
      batch.token[i] = tokens[static_cast<size_t>(i)];
      batch.pos[i] = i;
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    batch.n_tokens = n_tok;
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "decode failed\n");
      return 1;
    }
    std::string logits_json = "[";
    for (int i = 0; i < n_tok; ++i) {
      const float* l = llama_get_logits_ith(ctx, i);
      logits_json += i ? ",\n    [" : "\n    [";
      for (int v = 0; v < n_vocab; ++v) {
        if (v) logits_json += ", ";
        AppendFloat(logits_json, l[v]);
      }
      logits_json += "]";
    }
    logits_json += "]";
    llama_batch_free(batch);

    std::vector<int> greedy;
    std::vector<double> margins;
    std::string text;
    const float* last = llama_get_logits_ith(ctx, n_tok - 1);
    for (int step = 0; step < n_greedy; ++step) {
      double margin = 0;
      llama_token next = Argmax(last, n_vocab, &margin);
      greedy.push_back(next);
      margins.push_back(margin);
      char piece[256];
      const int np = llama_token_to_piece(vocab, next, piece, sizeof piece, 0, false);
      if (np > 0) text.append(piece, static_cast<size_t>(np));
      llama_batch one = llama_batch_init(1, 0, 1);
      one.token[0] = next;
      one.pos[0] = n_tok + step;
      one.n_seq_id[0] = 1;
      one.seq_id[0][0] = 0;
      one.logits[0] = 1;
      one.n_tokens = 1;
      if (llama_decode(ctx, one) != 0) {
        std::fprintf(stderr, "decode failed\n");
        return 1;
      }
      llama_batch_free(one);
      last = llama_get_logits_ith(ctx, 0);
    }
    llama_free(ctx);

    bool lossy = false;
    json += pi > 4 ? ",\n  {" : "\n  {";
    json += "\"prompt\": ";
    AppendJsonString(json, prompt, &lossy);
    json += ", \"add_bos\": true,\n   \"tokens\": [";
    for (int i = 0; i < n_tok; ++i) json += (i ? ", " : "") + std::to_string(tokens[static_cast<size_t>(i)]);
    json += "],\n   \"logits\": " + logits_json + ",\n   \"greedy\": [";
    for (size_t i = 0; i < greedy.size(); ++i) json += (i ? ", " : "") + std::to_string(greedy[i]);
    json += "],\n   \"greedy_margins\": [";
    for (size_t i = 0; i < margins.size(); ++i) {
      if (i) json += ", ";
      AppendFloat(json, margins[i]);
    }
    json += "],\n   \"greedy_text\": ";
    bool text_lossy = false;
    AppendJsonString(json, text, &text_lossy);
    json += std::string(", \"greedy_text_lossy\": ") + (text_lossy ? "true" : "false") + "}";
  }
  json += "]}\n";
  llama_model_free(model);

  FILE* f = std::fopen(out_path, "w");
  if (!f || std::fwrite(json.data(), 1, json.size(), f) != json.size() || std::fclose(f) != 0) {
    std::fprintf(stderr, "%s: cannot write\n", out_path);
    return 1;
  }
  return 0;
}
