"""Text normalisation, tokenisation and stemming shared by the builtin embedder and lexical search.

One function, `terms`, turns any text into the index terms Mnemo matches on: Unicode-normalised
(NFKC, casefolded, diacritics stripped) words, English stopwords removed, Porter-stemmed; runs of
CJK characters (written without spaces) become overlapping character pairs, as Lucene's CJK
analyser does, so a query can match inside them. Everything here is pure and deterministic: the
same text gives the same terms on every machine, which stored vectors and indexes rely on.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["STOPWORDS", "normalize", "stem", "terms", "tokens"]

# English function words (NLTK's list, plus the forms contractions take once their apostrophe is
# gone: "don't" -> "dont", but not those that are words too: "he'll" -> "hell", "I'd" -> "id").
# They carry no topic, and keeping them lets "what did she say" match every memory that contains
# "did" and "she". Lexical search must use this same list, or queries and index will disagree.
# fmt: off
STOPWORDS: frozenset[str] = frozenset(
    {
    "a", "about", "above", "after", "again", "against", "ain", "all", "am", "an", "and", "any",
    "are", "aren", "arent", "as", "at", "be", "because", "been", "before", "being", "below",
    "between", "both", "but", "by", "can", "cant", "couldn", "couldnt", "d", "did", "didn",
    "didnt", "do", "does", "doesn", "doesnt", "doing", "don", "dont", "down", "during", "each",
    "few", "for", "from", "further", "had", "hadn", "hadnt", "has", "hasn", "hasnt", "have",
    "haven", "havent", "having", "he", "hed", "hes", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "i", "im", "is", "isn", "isnt", "it", "itd",
    "itll", "its", "itself", "ive", "just", "ll", "m", "ma", "me", "mightn", "mightnt", "more",
    "most", "mustn", "mustnt", "my", "myself", "needn", "neednt", "no", "nor", "not", "now", "o",
    "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over",
    "own", "re", "s", "same", "shan", "shant", "she", "shes", "should", "shouldn",
    "shouldnt", "shouldve", "so", "some", "such", "t", "than", "that", "thatll", "thats", "the",
    "their", "theirs", "them", "themselves", "then", "there", "theres", "these", "they", "theyd",
    "theyll", "theyre", "theyve", "this", "those", "through", "to", "too", "under", "until", "up",
    "ve", "very", "was", "wasn", "wasnt", "we", "were", "weren", "werent", "weve",
    "what", "whats", "when", "where", "which", "while", "who", "whom", "whos", "why", "will",
    "with", "won", "wont", "wouldn", "wouldnt", "y", "you", "youd", "youll", "your", "youre",
    "yours", "yourself", "yourselves", "youve",
    }
)
# fmt: on

# Scripts written without spaces between words. Hangul does use spaces, but its words carry
# attached particles, so pairs match better there too.
_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\U00020000-\U0002fa1f"  # CJK extension B onwards
)
# A word: letters and digits (no underscore, so snake_case keys split), with inner apostrophes.
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:'[^\W_{_CJK}]+)*")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_CJK_RUN = re.compile(rf"[{_CJK}]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})


def normalize(text: str) -> str:
    """NFKC, casefold, typographic apostrophes made plain, diacritics stripped (café -> cafe)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Recompose what NFD split apart without being a diacritic (Hangul syllables, for one).
    return unicodedata.normalize("NFC", stripped)


def tokens(text: str) -> list[str]:
    """Normalised surface words in order, stopwords and single letters dropped, CJK as pairs."""
    out: list[str] = []
    text = normalize(text)
    # Most text is ASCII, and an ASCII-only pattern runs about twice as fast.
    for word in (_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text):
        # Every CJK character sorts after U+3040; the cheap comparison spares most words the match.
        if word[0] >= "\u3040" and _CJK_RUN.match(word):
            if len(word) == 1:
                out.append(word)
            else:
                out.extend([word[i : i + 2] for i in range(len(word) - 1)])
            continue
        if "'" in word:
            if word.endswith("'s"):
                word = word[:-2]
            word = word.replace("'", "")
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        out.append(word)
    return out


def terms(text: str) -> list[str]:
    """The index terms of a text: `tokens`, each stemmed. Use the same for documents and queries."""
    return [stem(word) for word in tokens(text)]


# --- Porter stemmer --------------------------------------------------------------------------
# M. F. Porter, "An algorithm for suffix stripping" (1980), as in his reference implementation
# (with its "bli" -> "ble" and "logi" -> "log" departures from the paper). Stemming is what lets
# "painting", "painted" and "paints" meet at "paint"; BM25 with it finds more of LoCoMo's evidence.
# Only plain ASCII words are stemmed: the rules are English.


def _consonant(word: str, i: int) -> bool:
    char = word[i]
    if char in "aeiou":
        return False
    if char == "y":
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(stem_: str) -> int:
    """m in [C](VC)^m[V]: how many vowel-consonant sequences the stem has."""
    m = 0
    previous_vowel = False
    for i in range(len(stem_)):
        vowel = not _consonant(stem_, i)
        if previous_vowel and not vowel:
            m += 1
        previous_vowel = vowel
    return m


def _has_vowel(stem_: str) -> bool:
    return any(not _consonant(stem_, i) for i in range(len(stem_)))


def _double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _consonant(word, len(word) - 1)


def _cvc(word: str) -> bool:
    """Ends consonant-vowel-consonant, the last not w, x or y (hop, not hoop or how)."""
    n = len(word)
    return (
        n >= 3
        and _consonant(word, n - 3)
        and not _consonant(word, n - 2)
        and _consonant(word, n - 1)
        and word[-1] not in "wxy"
    )


_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("bli", "ble"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
    ("logi", "log"),
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
# Longer suffixes before the shorter ones they end with (ement, ment, ent).
# fmt: off
_STEP4 = (
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou",
    "ism", "ate", "iti", "ous", "ive", "ize",
)
# fmt: on


def _replace(word: str, rules: tuple[tuple[str, str], ...], min_measure: int) -> str:
    # The first (longest listed) matching suffix decides, even when its condition fails.
    for suffix, replacement in rules:
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            return base + replacement if _measure(base) > min_measure else word
    return word


def _step1(word: str) -> str:
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]

    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    else:
        for suffix in ("ed", "ing"):
            if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
                word = word[: -len(suffix)]
                if word.endswith(("at", "bl", "iz")):
                    word += "e"
                elif _double_consonant(word) and word[-1] not in "lsz":
                    word = word[:-1]
                elif _measure(word) == 1 and _cvc(word):
                    word += "e"
                break

    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _step4(word: str) -> str:
    for suffix in _STEP4:
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            if suffix == "ion" and not base.endswith(("s", "t")):
                return word
            return base if _measure(base) > 1 else word
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        base = word[:-1]
        m = _measure(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            word = base
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


@lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """Porter stem of a lower-case word; other words (digits, other scripts) come back unchanged."""
    if len(word) <= 2 or not (word.isascii() and word.isalpha()):
        return word
    word = _step1(word)
    word = _replace(word, _STEP2, 0)
    word = _replace(word, _STEP3, 0)
    word = _step4(word)
    return _step5(word)
