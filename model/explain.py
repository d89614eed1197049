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
prediction per distinct word (at most `MAX_WORDS`), all rows of a batch scored
together in the compiled batch sizes: the jobs therefore explain the `needs_review`
rows only unless asked for all (`benchmarks/explain.py` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_WORDS = 64  # distinct words tried per text (the BiLSTM reads 40 tokens; a longer text's tail rarely matters)


def explain(model, texts: Sequence[str], label_ids: Sequence[int], k: int) -> list[list[dict]]:
    """For each text, up to `k` {word, contribution} (the label's probability lost without the word), largest
    first; `model` is a `ServingModel`."""
    words = model.words(texts)
    originals, variants, owners = [], [], []
    for row, tokens in enumerate(words):
        originals.append(" ".join(tokens))
        for word in list(dict.fromkeys(tokens))[:MAX_WORDS]:
            variants.append(" ".join(t for t in tokens if t != word))
            owners.append((row, word))
    if not variants:
        return [[] for _ in words]
    scored = model.probabilities(originals + variants)
    labels = np.asarray(label_ids, dtype=np.int64)
    base = scored[np.arange(len(originals)), labels]
    rows = np.fromiter((row for row, _ in owners), np.int64, len(owners))
    lost = base[rows] - scored[len(originals) + np.arange(len(owners)), labels[rows]]
    found: list[list[tuple[float, int, str]]] = [[] for _ in words]
    for n, ((row, word), value) in enumerate(zip(owners, lost.tolist(), strict=True)):
        if value > 0:
            found[row].append((-value, n, word))
    return [[{"word": word, "contribution": -negative} for negative, _, word in sorted(row)[:k]] for row in found]
