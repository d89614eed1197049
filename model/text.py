"""Text standardisation that lives inside the exported model.

Standardisation is a registered Keras function used as TextVectorization's
`standardize`, so training and serving run the very same TensorFlow ops and a saved
model reloads it by name (no pickled closures). Turkish needs its own lower-casing:
Unicode's default maps `I` to `i` (Turkish wants `ı`) and `İ` to `i` plus a
combining dot.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from model.config import DEFAULT_LOCALE, LOCALES

# Unicode punctuation and symbols become spaces, so "a,b" stays two tokens.
_PUNCTUATION = r"[\pP\pS]"
_COMBINING_DOT_ABOVE = "\u0307"


def _strip_and_collapse(text: tf.Tensor) -> tf.Tensor:
    text = tf.strings.regex_replace(text, _PUNCTUATION, " ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


@keras.saving.register_keras_serializable(package="complaints")
def standardize_turkish(text: tf.Tensor) -> tf.Tensor:
    """Turkish lower-casing (I→ı, İ→i), then punctuation and whitespace clean-up."""
    text = tf.strings.regex_replace(text, "I", "ı")
    text = tf.strings.regex_replace(text, "İ", "i")
    text = tf.strings.lower(text, encoding="utf-8")
    # A decomposed "i̇" (i + U+0307) is how other tools lower-case İ; fold it too.
    text = tf.strings.regex_replace(text, _COMBINING_DOT_ABOVE, "")
    return _strip_and_collapse(text)


@keras.saving.register_keras_serializable(package="complaints")
def standardize_unicode(text: tf.Tensor) -> tf.Tensor:
    """Plain Unicode lower-casing for languages without special casing rules."""
    return _strip_and_collapse(tf.strings.lower(text, encoding="utf-8"))


_BY_LOCALE: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "tr": standardize_turkish,
    "unicode": standardize_unicode,
}


def standardizer(locale: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The standardisation function for a locale name recorded in the artifact."""
    try:
        return _BY_LOCALE[locale]
    except KeyError:
        from model.errors import UserError

        raise UserError(
            f"unknown text locale {locale!r}: use one of {', '.join(LOCALES)}"
        ) from None


def standardize(texts: list[str], locale: str = DEFAULT_LOCALE) -> list[str]:
    """Standardise Python strings eagerly, for tests, `describe` and debugging."""
    out = standardizer(locale)(tf.constant(texts, dtype=tf.string))
    return [value.decode("utf-8") for value in out.numpy()]


def make_vectorizer(
    max_tokens: int, sequence_length: int, locale: str = DEFAULT_LOCALE
) -> keras.layers.TextVectorization:
    """The reference TextVectorization layer with the locale's standardisation."""
    return keras.layers.TextVectorization(
        max_tokens=max_tokens,
        output_sequence_length=sequence_length,
        standardize=standardizer(locale),
        name="text_vectorization",
    )
