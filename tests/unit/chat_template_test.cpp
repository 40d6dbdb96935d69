#include "runtime/chat_template.h"

#include <gtest/gtest.h>

namespace tierlm {
namespace {

TEST(ChatTemplateTest, DetectsCommonTemplatesFromJinja) {
  EXPECT_EQ(DetectChatTemplate("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                               "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"),
            ChatTemplate::kChatml);
  EXPECT_EQ(DetectChatTemplate("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
                               "message['content'] | trim + '<|eot_id|>' }}"),
            ChatTemplate::kLlama3);
  EXPECT_EQ(DetectChatTemplate("{% if messages[0]['role'] == 'system' %}<<SYS>>\\n{{ system }}\\n<</SYS>>"
                               "{% endif %}{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
            ChatTemplate::kLlama2);
  EXPECT_EQ(DetectChatTemplate("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + "
                               "' [/INST]' }}{% endfor %}"),
            ChatTemplate::kMistral);
  EXPECT_EQ(DetectChatTemplate("{% for message in messages %}{{ '<|user|>\\n' + message['content'] + "
                               "eos_token }}{% endfor %}{{ '</s>' }}"),
            ChatTemplate::kZephyr);
  EXPECT_EQ(DetectChatTemplate("{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + "
                               "'<|assistant|>' + '\\n'}}"),
            ChatTemplate::kPhi3);
  EXPECT_EQ(DetectChatTemplate("{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                               "'<end_of_turn>\\n' }}"),
            ChatTemplate::kGemma);
  EXPECT_FALSE(DetectChatTemplate("{{ message['content'] }}").has_value());
}

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Why?"}};

TEST(ChatTemplateTest, Chatml) {
  EXPECT_EQ(FormatChat(ChatTemplate::kChatml, kConversation, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, Llama3) {
  EXPECT_EQ(FormatChat(ChatTemplate::kLlama3, {{"user", "Hi"}}, true),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama2WrapsSystemInFirstTurn) {
  EXPECT_EQ(FormatChat(ChatTemplate::kLlama2, kConversation, true),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s><s>[INST] Why? [/INST]");
}

TEST(ChatTemplateTest, MistralHasNoSysMarkers) {
  EXPECT_EQ(FormatChat(ChatTemplate::kMistral, {{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Ok"}}, true),
            "[INST] Hi [/INST] Yo</s><s>[INST] Ok [/INST]");
}

TEST(ChatTemplateTest, ZephyrPhi3Gemma) {
  EXPECT_EQ(FormatChat(ChatTemplate::kZephyr, {{"user", "Hi"}}, true), "<|user|>\nHi</s>\n<|assistant|>\n");
  EXPECT_EQ(FormatChat(ChatTemplate::kPhi3, {{"user", "Hi"}}, true), "<|user|>\nHi<|end|>\n<|assistant|>\n");
  EXPECT_EQ(FormatChat(ChatTemplate::kGemma, {{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}}, true),
            "<start_of_turn>user\nS\n\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplateTest, AppendingATurnExtendsThePreviousText) {
  // The chat loop feeds only the new suffix to the KV cache; that needs this property.
  for (auto t : {ChatTemplate::kChatml, ChatTemplate::kLlama3, ChatTemplate::kZephyr, ChatTemplate::kPhi3,
                 ChatTemplate::kGemma}) {
    std::vector<ChatMessage> m = {{"user", "Hi"}};
    const std::string before = FormatChat(t, m, true) + "Hello!";
    m.push_back({"assistant", "Hello!"});
    m.push_back({"user", "More"});
    EXPECT_EQ(FormatChat(t, m, true).compare(0, before.size(), before), 0) << ChatTemplateName(t);
  }
}

}  // namespace
}  // namespace tierlm
