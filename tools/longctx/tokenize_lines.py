#!/usr/bin/python3
"""Prints the token ids the trainer (train_longctx.py) gives a text file, one line of ids
per non-empty text line (each line tokenized on its own, then the newline byte token):
LongctxModelTest compares them with tierlm's tokenizer (eval/passkey_task.h)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "reference"))
sys.path.insert(0, HERE)

import gguf_reader  # noqa: E402
import spm  # noqa: E402


def main():
    model, text = sys.argv[1], sys.argv[2]
    md = gguf_reader.GGUFFile(model).metadata
    vocab = spm.SpmVocab(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.scores"])
    nl = vocab.encode_piece("\n")
    with open(text, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line:
                print(" ".join(str(i) for i in vocab.encode(line) + nl))


if __name__ == "__main__":
    main()
