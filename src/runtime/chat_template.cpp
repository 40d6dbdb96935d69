#include "runtime/chat_template.h"

namespace tierlm {
namespace {
bool Has(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }
}  // namespace

const char* ChatTemplateName(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::kChatml: return "chatml";
    case ChatTemplate::kLlama2: return "llama2";
    case ChatTemplate::kLlama3: return "llama3";
    case ChatTemplate::kMistral: return "mistral";
    case ChatTemplate::kZephyr: return "zephyr";
    case ChatTemplate::kPhi3: return "phi3";
    case ChatTemplate::kGemma: return "gemma";
  }
  return "?";
}

std::optional<ChatTemplate> ParseChatTemplateName(std::string_view name) {
  for (auto t : {ChatTemplate::kChatml, ChatTemplate::kLlama2, ChatTemplate::kLlama3, ChatTemplate::kMistral,
                 ChatTemplate::kZephyr, ChatTemplate::kPhi3, ChatTemplate::kGemma})
    if (name == ChatTemplateName(t)) return t;
  return std::nullopt;
}

std::optional<ChatTemplate> DetectChatTemplate(std::string_view j) {
  if (Has(j, "<|im_start|>")) return ChatTemplate::kChatml;
  if (Has(j, "<|start_header_id|>") && Has(j, "<|eot_id|>")) return ChatTemplate::kLlama3;
  if (Has(j, "<start_of_turn>")) return ChatTemplate::kGemma;
  if (Has(j, "<|assistant|>") && Has(j, "<|end|>")) return ChatTemplate::kPhi3;
  if (Has(j, "<|user|>") && Has(j, "</s>")) return ChatTemplate::kZephyr;
  if (Has(j, "[INST]")) {
    // Llama 2 wraps a system prompt in <<SYS>>; Mistral's templates do not.
    if (Has(j, "<<SYS>>")) return ChatTemplate::kLlama2;
    return ChatTemplate::kMistral;
  }
  return std::nullopt;
}

std::string FormatChat(ChatTemplate t, const std::vector<ChatMessage>& msgs, bool add_assistant_prefix) {
  std::string out;
  switch (t) {
    case ChatTemplate::kChatml:
      for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_assistant_prefix) out += "<|im_start|>assistant\n";
      break;
    case ChatTemplate::kLlama3:
      for (const auto& m : msgs)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      if (add_assistant_prefix) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatTemplate::kGemma: {
      std::string system;
      for (const auto& m : msgs) {
        if (m.role == "system") {
          system += m.content + "\n\n";
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        out += "<start_of_turn>" + role + "\n" + (role == "user" ? system : "") + m.content + "<end_of_turn>\n";
        if (role == "user") system.clear();
      }
      if (add_assistant_prefix) out += "<start_of_turn>model\n";
      break;
    }
    case ChatTemplate::kPhi3:
      for (const auto& m : msgs) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      if (add_assistant_prefix) out += "<|assistant|>\n";
      break;
    case ChatTemplate::kZephyr:
      for (const auto& m : msgs) out += "<|" + m.role + "|>\n" + m.content + "</s>\n";
      if (add_assistant_prefix) out += "<|assistant|>\n";
      break;
    case ChatTemplate::kLlama2:
    case ChatTemplate::kMistral: {
      // [INST] user [/INST] assistant</s>[INST] ...; a system prompt joins the first user turn.
      const bool llama2 = t == ChatTemplate::kLlama2;
      std::string system;
      bool first = true;
      for (const auto& m : msgs) {
        if (m.role == "system") {
          system = m.content;
        } else if (m.role == "user") {
          out += first ? "[INST] " : "<s>[INST] ";
          if (!system.empty()) {
            out += llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" : system + "\n\n";
            system.clear();
          }
          out += m.content + " [/INST]";
          first = false;
        } else {
          out += " " + m.content + "</s>";
        }
      }
      break;
    }
  }
  return out;
}

}  // namespace tierlm
