from model.sample import CATEGORIES, generate


def test_reference_categories():
    assert len(CATEGORIES) == 32
    assert "Cep Telefon Kategori" in CATEGORIES and "Kişisel Bakım ve Kozmetik" in CATEGORIES


def test_generation_is_deterministic_and_varied():
    a = generate(3000, seed=5)
    b = generate(3000, seed=5)
    assert a.equals(b)
    assert not a.equals(generate(3000, seed=6))
    assert list(a.columns) == ["id", "text", "category"]
    assert a["id"].is_unique
    assert set(a["category"]) == set(CATEGORIES)
    lengths = a["text"].str.len()
    assert lengths.min() < 100 < lengths.max()
    joined = " ".join(a["text"])
    assert any(ch in joined for ch in "ığşçöüİ")
    assert "I" in joined and "İ" in joined  # shouted texts exercise Turkish casing


def test_unlabelled():
    frame = generate(10, seed=1, labelled=False)
    assert list(frame.columns) == ["id", "text"]
