// Chat templates: formatting a conversation into the prompt text a model was tuned on.
//
// Like llama.cpp, tierlm does not run the Jinja template in the GGUF; it recognises the
// common templates by their markers and formats messages with built-in code.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tierlm {

enum class ChatTemplate { kChatml, kLlama2, kLlama3, kMistral, kZephyr, kPhi3, kGemma };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

const char* ChatTemplateName(ChatTemplate t);
std::optional<ChatTemplate> ParseChatTemplateName(std::string_view name);

// Recognises a template from the text of tokenizer.chat_template; nullopt if unknown.
std::optional<ChatTemplate> DetectChatTemplate(std::string_view jinja);

// The prompt for `messages`, ending with the cue for the assistant's next turn when
// add_assistant_prefix. BOS is not included (the tokenizer adds it).
std::string FormatChat(ChatTemplate t, const std::vector<ChatMessage>& messages, bool add_assistant_prefix);

}  // namespace tierlm
