#!/usr/bin/env python3
"""Reference vectors of all-MiniLM-L6-v2 for `tests/local_model.rs`, computed independently of
golden: the tokenizer (BERT's basic tokenizer and WordPiece, from the vocabulary inside
tokenizer.json) and the forward pass (six BERT layers, mean pooling, L2 normalisation) are
written here in float64 numpy over the model's safetensors, without candle, the `tokenizers`
library, PyTorch or transformers.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy
    /tmp/ref/bin/python scripts/reference-vectors.py models/all-MiniLM-L6-v2 > tests/data/minilm-reference.json

The sentences cover a short text, a query, punctuation, accents and CJK characters, an empty
text, and a text past the model's 256 tokens (truncated, as sentence-transformers does).
"""

import json
import math
import struct
import sys
import unicodedata

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length

SENTENCES = [
    "The cat sits on the mat.",
    "how do I add an index to a busy Postgres table without locking out writes?",
    "Rust's ownership rules: a value has one owner; when the owner goes out of scope, it is dropped!",
    "Crème brûlée, naïve café, Ångström and Straße: accents and ligatures — 東京の天気は晴れです。",
    "",
    " ".join(
        "Retrieval-augmented generation finds the passages that answer a question and hands them "
        "to a language model, so the quality of the search bounds the quality of the answer."
        .split()
        * 12
    ),
]


def is_punctuation(char):
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk(code):
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def normalize(text):
    """BERT's normalizer for an uncased model: clean, space out CJK, lowercase, strip accents."""
    out = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD:
            continue
        category = unicodedata.category(char)
        if char in "\t\n\r" or category == "Zs":
            out.append(" ")
        elif category in ("Cc", "Cf"):
            continue
        elif is_cjk(code):
            out.append(f" {char} ")
        else:
            out.append(char)
    text = "".join(out).lower()
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def pre_tokenize(text):
    words = []
    for piece in text.split():
        current = ""
        for char in piece:
            if is_punctuation(char):
                if current:
                    words.append(current)
                    current = ""
                words.append(char)
            else:
                current += char
        if current:
            words.append(current)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            candidate = ("##" if start > 0 else "") + word[start:end]
            if candidate in vocab:
                found = candidate
                break
            end -= 1
        if found is None:
            return ["[UNK]"]
        pieces.append(found)
        start = end
    return pieces


def token_ids(text, vocab):
    tokens = [piece for word in pre_tokenize(normalize(text)) for piece in wordpiece(word, vocab)]
    tokens = ["[CLS]"] + tokens[: MAX_TOKENS - 2] + ["[SEP]"]
    return [vocab[token] for token in tokens]


def read_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        begin, end = meta["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return tensors


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


ERF = np.vectorize(math.erf)


def embed(ids, w, config):
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def linear(name, v):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (linear(f"attention.self.{name}", x) for name in ("query", "key", "value"))
        size = q.shape[1] // heads
        q, k, v = (t.reshape(n, heads, size).transpose(1, 0, 2) for t in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
        x = layer_norm(x + linear("attention.output.dense", context),
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        hidden = linear("intermediate.dense", x)
        hidden = 0.5 * hidden * (1.0 + ERF(hidden / math.sqrt(2.0)))
        x = layer_norm(x + linear("output.dense", hidden), w[p + "output.LayerNorm.weight"],
                       w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def main():
    folder = sys.argv[1]
    config = json.load(open(f"{folder}/config.json"))
    vocab = json.load(open(f"{folder}/tokenizer.json"))["model"]["vocab"]
    weights = read_safetensors(f"{folder}/model.safetensors")
    references = []
    for text in SENTENCES:
        ids = token_ids(text, vocab)
        vector = embed(ids, weights, config)
        references.append({"text": text, "tokens": len(ids), "vector": [round(float(x), 7) for x in vector]})
        print(f"{len(ids)} tokens: {text[:50]!r}", file=sys.stderr)
    # One reference a line pair, so the file diffs readably.
    out = ["{", '  "model": "sentence-transformers/all-MiniLM-L6-v2",',
           '  "made_by": "scripts/reference-vectors.py (float64 numpy over the safetensors, its own WordPiece tokenizer)",',
           '  "references": [']
    for i, ref in enumerate(references):
        out.append('    {"text": %s, "tokens": %d,' % (json.dumps(ref["text"], ensure_ascii=False), ref["tokens"]))
        out.append('     "vector": %s}%s' % (json.dumps(ref["vector"]), "," if i < len(references) - 1 else ""))
    out += ["  ]", "}"]
    print("\n".join(out))

if __name__ == "__main__":
    main()
