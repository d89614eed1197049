"""Why a label: the words that pushed a text most towards the label it was given.

Leave-one-word-out occlusion through the served model itself: for each distinct word
of a text (as the model's standardisation splits it), the text is scored again
without every occurrence of that word, and the word's contribution is how much the
label's probability falls: p(label | text) − p(label | text without the word). The
K largest positive contributions are the explanation; a word whose removal makes the
label *more* likely did not push towards it and is left out.

One method for every architecture, because it asks the served model (at its
precision, through `ServingModel`) and nothing else: the BiLSTM's and the linear
model's explanations mean the same, and an explanation is exactly what the served
model would do without the word, not an approximation of it. The cost is one more
prediction per distinct word the model reads (at most `MAX_WORDS`), all rows of a
batch scored together in the compiled batch sizes: the jobs therefore explain the `needs_review`
rows only unless asked for all (`benchmarks/explain.py` measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

import numpy as np

MAX_WORDS = 64  # distinct words tried per text (the BiLSTM reads 40 tokens; a longer text's tail rarely matters)
CHUNK_CHARS = 4_000_000  # variant text scored at once: memory stays flat however long the texts


def explain(model, texts: Sequence[str], label_ids: Sequence[int], k: int) -> list[list[dict]]:
    """For each text, up to `k` {word, contribution} (the label's probability lost without the word), largest
    first; `model` is a `ServingModel`.

    Memory does not grow with text length: a model that reads a window of words (the
    BiLSTM's first 40) is asked only about the words in it, each variant built from the
    window (removing a word pulls the next ones in, so a variant is the first words of the
    text without it, never the whole text); a model that reads every word (the linear
    model's n-grams) gets whole variants, built and scored `CHUNK_CHARS` at a time."""
    words = model.words(texts)
    window = getattr(model, "words_read", None)
    labels = np.asarray(label_ids, dtype=np.int64)
    if not any(words):
        return [[] for _ in words]
    base = model.probabilities([" ".join(tokens[:window]) for tokens in words])[np.arange(len(words)), labels]
    found: list[list[tuple[float, int, str]]] = [[] for _ in words]
    n = 0
    for chunk in _variants(words, window):
        rows = np.fromiter((row for row, _, _ in chunk), np.int64, len(chunk))
        lost = base[rows] - model.probabilities([text for _, _, text in chunk])[np.arange(len(chunk)), labels[rows]]
        for (row, word, _), value in zip(chunk, lost.tolist(), strict=True):
            if value > 0:
                found[row].append((-value, n, word))
            n += 1
    return [[{"word": word, "contribution": -negative} for negative, _, word in sorted(row)[:k]] for row in found]


def _variants(words: list[list[str]], window: int | None) -> Iterator[list[tuple[int, str, str]]]:
    """(row, word, the text without the word, as the model reads it), in chunks of at most about `CHUNK_CHARS`."""
    chunk, size = [], 0
    for row, tokens in enumerate(words):
        for word in list(dict.fromkeys(tokens[:window]))[:MAX_WORDS]:
            kept = (t for t in tokens if t != word)
            text = " ".join(islice(kept, window) if window else kept)
            chunk.append((row, word, text))
            size += len(text) + 1
            if size >= CHUNK_CHARS:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk
