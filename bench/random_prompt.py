#!/usr/bin/python3
"""Text that tokenizes into random tokens of a model's vocabulary, for peers that can
only be fed text (llama-completion): N random normal tokens of the GGUF's vocabulary,
joined as SentencePiece prints them. Reads only the file's metadata.

  /usr/bin/python3 bench/random_prompt.py MODEL.gguf N [SEED] > prompt.txt
"""
import random
import struct
import sys

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_metadata(path):
    f = open(path, "rb")

    def take(fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, f.read(size))[0]

    def string():
        return f.read(take("<Q")).decode("utf-8", "replace")

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            item, n = take("<I"), take("<Q")
            return [value(item) for _ in range(n)]
        return take(SCALAR[t])

    if f.read(4) != b"GGUF":
        sys.exit(path + ": not a GGUF file")
    take("<I")
    take("<Q")
    n_kv = take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("<I"))
    return meta


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    meta = read_metadata(sys.argv[1])
    n = int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1234)
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    normal = [t for t, ty in zip(tokens, types) if ty == 1 and not (t.startswith("<") and t.endswith(">"))]
    pieces = [rng.choice(normal) for _ in range(n)]
    sys.stdout.write("".join(pieces).replace("\u2581", " ").strip() + "\n")


if __name__ == "__main__":
    main()
