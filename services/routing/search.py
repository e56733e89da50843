"""Keyword search over the categories: Turkish-aware words and a small weighted index.

A text is lowered with Turkish rules and folded to ASCII ("Çöpler" -> "copler", so "cop" finds
"çöp"); stop words go; each word is looked up by its first letters, short keywords also with
their inflections. Rare keywords weigh more (idf).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.common.turkish import turkish_lower


class Searchable(Protocol):
    """What the index reads of a category."""

    @property
    def name(self) -> str: ...

    @property
    def keywords(self) -> Sequence[str]: ...


# After lowering, fold to ASCII so that "cop" finds "çöp": many people type without Turkish keys.
_FOLD = str.maketrans({"ı": "i", "â": "a", "î": "i", "û": "u"})
_WORD = re.compile(r"[0-9a-z]+")

# Words that carry no subject in an application text (compared before folding, so that "şu"
# is dropped while "su", water, is kept).
STOP_WORDS = frozenset(
    """
    ve veya ile ya da de ki mi mı mu mü bir bu şu o bunlar şunlar onlar ben sen biz siz
    benim bizim için gibi kadar daha çok en az ama fakat ancak ne neden niçin nasıl hangi her
    hiç tüm bütün olan olarak oldu olduğu olmuş olmadı olmuyor var yok değil diye ise bile
    sonra önce artık hala hâlâ halen hep lütfen rica ederim ediyorum ederiz ediyoruz sayın
    yetkili yetkililer ilgili ilgililer teşekkür teşekkürler merhaba iyi günler gün gündür
    günlerdir hafta haftadır ay aydır yıl yıldır saat saattir defa kez kere bugün dün yarın
    sabah akşam iki üç dört beş on yine tekrar hakkında konusunda konu başvuru şikayet şikâyet
    talep talebi istek sorunu sorun problem durum durumu
    """.split()
)
_EDGE_PUNCTUATION = re.compile(r"^\W+|\W+$")

# Turkish inflectional endings (folded) that may follow a short keyword: "çöp" finds "çöpler",
# "su" finds "suyu" and "sular", but "su" does not find "suç".
SHORT_WORD_SUFFIXES = frozenset(
    """
    a e i u ya ye yi yu da de ta te dan den tan ten in un nin nun yin yun la le yla yle
    lar ler lari leri larin lerin larda lerde lardan lerden lara lere si su sin sun na ne
    nda nde ndan nden ndaki ndeki daki deki umuz imiz muz miz unuz iniz ku ki ci cu
    """.split()
)
# Keywords this long or longer match any word that begins with their first letters.
PREFIX_MIN = 4
PREFIX_LEN = 5


def fold(word: str) -> str:
    """Lower-case with Turkish rules, then drop diacritics: "Çöpler" -> "copler"."""
    lowered = turkish_lower(word).translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# The same words typed without Turkish letters ("cok", "icin"); but "su" stays, it is water.
_FOLDED_STOP_WORDS = frozenset(fold(w) for w in STOP_WORDS) - {"su"}


def words(text: str) -> list[str]:
    """The folded words of a text that can say what it is about (stop words removed)."""
    out: list[str] = []
    for raw in turkish_lower(text).replace("’", "'").split():
        # An apostrophe separates a proper noun from its suffix: "Pamukkale'de".
        head = _EDGE_PUNCTUATION.sub("", raw.split("'", 1)[0])
        if head in STOP_WORDS:
            continue
        out.extend(w for w in _WORD.findall(fold(head)) if w not in _FOLDED_STOP_WORDS)
    return out


def keyword_key(word: str) -> str:
    """How a keyword is indexed: long words by their first letters, short ones whole."""
    folded = fold(word)
    return folded[:PREFIX_LEN] if len(folded) >= PREFIX_MIN else folded


def keys_for(word: str) -> list[str]:
    """The keyword keys a folded text word can match."""
    keys: list[str] = []
    if len(word) >= PREFIX_LEN:
        keys.append(word[:PREFIX_LEN])
    if len(word) >= PREFIX_MIN:
        keys.append(word[:PREFIX_MIN])
    for n in range(1, PREFIX_MIN):
        if len(word) >= n and (len(word) == n or word[n:] in SHORT_WORD_SUFFIXES):
            keys.append(word[:n])
    return keys


@dataclass(frozen=True)
class KeywordIndex:
    postings: dict[str, frozenset[int]]
    idf: dict[str, float]

    @classmethod
    def build(cls, categories: Sequence[Searchable]) -> KeywordIndex:
        found: dict[str, set[int]] = defaultdict(set)
        for n, category in enumerate(categories):
            # The category's own name counts as keywords too.
            for word in [*category.keywords, *words(category.name)]:
                key = keyword_key(word)
                if key:
                    found[key].add(n)
        total = len(categories)
        # Rare words say more: "akmıyor" points at one category, "sokak" at many.
        idf = {key: math.log(1 + total / len(cats)) for key, cats in found.items()}
        return cls({key: frozenset(cats) for key, cats in found.items()}, idf)

    def scores(self, text_words: Iterable[str]) -> dict[int, float]:
        credited: dict[int, dict[str, float]] = defaultdict(dict)
        for word in set(text_words):
            # One text word counts once per category, through its best-weighted keyword.
            best: dict[int, tuple[str, float]] = {}
            for key in keys_for(word):
                weight = self.idf.get(key)
                if weight is None:
                    continue
                for n in self.postings[key]:
                    if n not in best or best[n][1] < weight:
                        best[n] = (key, weight)
            for n, (key, weight) in best.items():
                credited[n][key] = weight
        return {n: sum(keys.values()) for n, keys in credited.items()}
