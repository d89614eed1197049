import pytest

from model.text import standardize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("IŞIK", "ışık"),  # dotless capital I → ı, not i
        ("İSTANBUL", "istanbul"),  # dotted capital İ → i, with no combining dot
        ("ÇĞÖŞÜ", "çğöşü"),
        ("i\u0307stanbul", "istanbul"),  # a decomposed i̇ from other tools folds too
        ("Kargo, gelmedi!!! :(", "kargo gelmedi"),
        ("  çok   \t yavaş\n\nteslimat  ", "çok yavaş teslimat"),
        ("a,b.c", "a b c"),  # punctuation separates tokens
        ("fiyat 1.299 TL", "fiyat 1 299 tl"),
        ("?!... 😡", ""),
        ("", ""),
    ],
)
def test_turkish_standardisation(raw, expected):
    assert standardize([raw], "tr") == [expected]


def test_unicode_locale_uses_default_casing():
    assert standardize(["IŞIK İzmir"], "unicode") == ["işik i̇zmir"]
    assert standardize(["I LIKE IT"], "unicode") == ["i like it"]
    assert standardize(["I LIKE IT"], "tr") == ["ı lıke ıt"]


def test_unknown_locale_is_a_user_error():
    from model.errors import UserError

    with pytest.raises(UserError, match="unknown text locale"):
        standardize(["x"], "klingon")
