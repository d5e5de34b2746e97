"""Text normalisation, tokens and stemming (core/embeddings/text.py), which the builtin
embedder and the lexical index share."""

from __future__ import annotations

import pytest

from core.embeddings.text import STOPWORDS, normalize, stem, terms, tokens
from tests.embedding_texts import HOSTILE


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["painting", "painted", "paints", "paint"], "paint"),
        (["studies", "study", "studied"], "studi"),
        (["running", "runs", "run"], "run"),
        (["hopping", "hops"], "hop"),
        (["relational", "relate", "relating"], "relat"),
        (["adoption", "adopted", "adopting"], "adopt"),
        (["caresses", "caress"], "caress"),
        (["generalization", "generalize"], "gener"),
    ],
)
def test_stemmer_joins_word_forms(words: list[str], expected: str) -> None:
    assert {stem(word) for word in words} == {expected}


def test_stemmer_leaves_other_words_alone() -> None:
    for word in ["2023", "東京", "naïve", "ab", "x"]:
        assert stem(word) == word


def test_terms_normalise_and_drop_stopwords() -> None:
    assert terms("Caroline's going to the LGBTQ support-group; she didn't PAINT!") == [
        "carolin",
        "go",
        "lgbtq",
        "support",
        "group",
        "paint",
    ]
    assert terms("Café NAÏVE résumé ﬁle") == ["cafe", "naiv", "resum", "file"]
    assert terms("user_pref don\u2019t 4 a I") == ["user", "pref", "4"]  # curly apostrophe too
    assert terms("東京タワー") == ["東京", "京タ", "タワ", "ワー"]  # CJK as overlapping pairs
    assert terms("the and of 🙂 ...") == []
    assert {"the", "what", "dont"} <= STOPWORDS


def test_normalize_is_nfkc_casefold_without_diacritics() -> None:
    fullwidth_abc = "\uff21\uff22\uff23"
    assert normalize(f"{fullwidth_abc} Straße Ångström") == "abc strasse angstrom"
    assert normalize("서울") == "서울"  # Hangul survives decomposition and recomposition


@pytest.mark.parametrize("text", HOSTILE)
def test_tokenizer_takes_any_text(text: str) -> None:
    assert all(isinstance(term, str) and term for term in terms(text))
    assert tokens(text) == tokens(text)
