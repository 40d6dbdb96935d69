"""SentencePiece-style BPE over a GGUF `llama` vocabulary, as tierlm's SpmTokenizer and
llama.cpp's SPM tokenizer do it: one symbol per UTF-8 character (spaces as U+2581, one
prepended), repeatedly merge the adjacent pair whose concatenation is the highest-scoring
token (ties: the leftmost), then byte fallback (<0xNN>) for symbols that are not tokens.

Written for the long-context model's training data; tools/longctx/README.md says how its
agreement with tierlm is checked.
"""

import heapq


class SpmVocab:
    def __init__(self, tokens, scores):
        self.tokens = list(tokens)
        self.scores = [float(s) for s in scores]
        self.index = {}
        for i, t in enumerate(self.tokens):
            self.index.setdefault(t, i)
        self.byte_tokens = []
        for b in range(256):
            i = self.index.get("<0x%02X>" % b)
            if i is None:
                i = self.index.get(chr(b), 0)
            self.byte_tokens.append(i)

    def encode_piece(self, text):
        """Tokens of already-escaped text (no prefix added here)."""
        if not text:
            return []
        syms = list(text)  # one symbol per character
        n = len(syms)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        alive = [True] * n
        heap = []
        index = self.index
        scores = self.scores

        def add(left, right):
            if left < 0 or right < 0:
                return
            s = syms[left] + syms[right]
            i = index.get(s)
            if i is not None:
                heapq.heappush(heap, (-scores[i], left, right, s))

        for i in range(1, n):
            add(i - 1, i)
        while heap:
            _, left, right, s = heapq.heappop(heap)
            if not alive[left] or not alive[right] or syms[left] + syms[right] != s:
                continue
            syms[left] = s
            alive[right] = False
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add(prev[left], left)
            add(left, nxt[left])
        out = []
        i = 0
        while i != -1:
            piece = syms[i]
            t = index.get(piece)
            if t is not None:
                out.append(t)
            else:
                out.extend(self.byte_tokens[b] for b in piece.encode("utf-8"))
            i = nxt[i]
        return out

    def encode(self, text, space_prefix=True):
        """tierlm/llama.cpp tokenization of plain text (no BOS)."""
        if space_prefix:
            text = " " + text
        return self.encode_piece(text.replace(" ", "\u2581"))

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                out.append(int(t[3:5], 16))
            elif t in ("<s>", "</s>", "<unk>"):
                continue
            else:
                out.extend(t.replace("\u2581", " ").encode("utf-8"))
        return out.decode("utf-8", errors="replace")
