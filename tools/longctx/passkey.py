"""Pass-key documents, the retrieval task the long-context model is trained and judged on.

A document of n tokens is
  BOS, header, filler[:a], needle(key), filler[a:], question, answer(key)
where filler is a contiguous run of text tokens and a = depth * len(filler). Each piece is
tokenized on its own (with the SentencePiece space prefix; the answer, the key's digits,
without) and the token lists joined. The key is set off by '#', which the filler never
holds, so the answer is a copy of what follows the needle's '#' (every digit is a token
of the vocabulary, and a digit after a space would follow the most common token). This
is how tierlm's `kv-eval` builds its prompts too (src/eval/passkey_task.cpp), so training and
evaluation see the same tokens.
"""

HEADER = "There is a pass key hidden in this text. Find it and remember it."
NEEDLE = "The pass key is #{key}#. Remember it. #{key}# is the pass key."
QUESTION = "What is the pass key? The pass key is #"


class Pieces:
    def __init__(self, vocab):
        self.vocab = vocab
        self.header = vocab.encode(HEADER)
        self.question = vocab.encode(QUESTION)

    def needle(self, key):
        return self.vocab.encode(NEEDLE.format(key=key))

    def answer(self, key):
        return self.vocab.encode_piece(str(key))

    def document(self, source, n, key, depth, rng):
        """(ids of length n, index in ids where the answer starts)."""
        needle = self.needle(key)
        answer = self.answer(key)
        n_fill = n - 1 - len(self.header) - len(needle) - len(self.question) - len(answer)
        if n_fill < 0:
            raise ValueError("a pass-key document needs more than %d tokens" % n)
        s = rng.randrange(0, len(source) - n_fill)
        fill = [int(x) for x in source[s : s + n_fill]]
        a = int(round(depth * n_fill))
        ids = [1] + self.header + fill[:a] + needle + fill[a:] + self.question
        return ids + answer, len(ids)
