"""A small random sentence generator with a varied everyday vocabulary (English).

Sentences are built from templates and word lists; every word is a common English word found in
CMUdict, so the phonemiser never has to guess. ``make_sentence(rng)`` is deterministic given the
numpy Generator state.
"""

from __future__ import annotations

import numpy as np

NOUNS = (
    "dog cat bird horse fish boat car train plane bike house garden river lake forest mountain city "
    "street window door table chair book letter paper pencil box bag basket bottle cup glass plate "
    "spoon knife apple orange lemon bread cheese butter soup coffee tea water milk sugar salt rain snow "
    "wind storm cloud sun moon star light shadow song story picture camera phone clock bell drum guitar "
    "piano ball game team player teacher doctor farmer painter driver sailor child friend neighbor "
    "brother sister mother father king queen captain soldier student baker hunter island bridge tower "
    "castle road field market school office kitchen bedroom roof wall floor stone rock sand wood metal "
    "gold silver coin ticket map key rope chain wheel engine machine computer radio signal message "
    "color ribbon blanket pillow jacket shirt hat shoe boot glove ring necklace candle lamp fire smoke "
    "flower tree leaf grass seed fruit berry onion carrot potato tomato pepper honey cookie cake pie"
).split()
ADJECTIVES = (
    "big small old young quick slow bright dark warm cold soft hard loud quiet heavy light happy sad "
    "green red blue yellow brown black white purple golden silver clean dirty empty full round square "
    "tall short long narrow wide sharp gentle strong weak busy lazy clever brave shy proud friendly "
    "strange simple fancy rusty shiny wooden broken tiny huge fresh sweet bitter salty smooth rough "
    "early late noisy calm famous hidden careful curious sleepy hungry thirsty"
).split()
VERBS_PAST = (
    "found lost carried dropped pushed pulled opened closed painted cleaned washed fixed broke built "
    "bought sold watched followed called heard saw kicked threw caught moved lifted filled emptied "
    "cooked baked cut folded wrapped packed hid covered touched held placed turned"
).split()
VERBS_BASE = (
    "find carry drop push pull open close paint clean wash fix build buy sell watch follow call hear "
    "kick throw catch move lift fill cook bake cut fold wrap pack hide cover touch hold place turn"
).split()
INTRANSITIVE_PAST = (
    "arrived left waited laughed smiled jumped danced slept walked ran swam sang shouted whispered "
    "listened worked played rested stopped started returned disappeared"
).split()
PLACES = (
    "in the garden|near the river|on the table|under the bridge|at the market|behind the house|"
    "in the kitchen|by the window|on the roof|across the street|inside the box|at the station|"
    "in the forest|on the island|at school|in the city|on the road|by the lake|in the morning|"
    "after dinner|before noon|at night|last week|every day|on monday|on friday|in the summer|in winter"
).split("|")
NAMES = (
    "Anna Ben Carla David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia Paul Rose Sam "
    "Tom Lucy Mark Helen Peter Sarah"
).split()
ADVERBS = "slowly quickly carefully quietly loudly gently happily suddenly finally easily again".split()
NUMBERS = "two three four five six seven eight nine ten twelve twenty".split()
TIMES = "yesterday today tomorrow tonight".split()


def _pick(rng: np.random.Generator, words) -> str:
    return words[int(rng.integers(len(words)))]


def _np(rng: np.random.Generator) -> str:
    """A noun phrase: 'the red cup', 'a dog', 'Anna', 'three old boats'."""
    r = rng.random()
    if r < 0.12:
        return _pick(rng, NAMES)
    noun = _pick(rng, NOUNS)
    adj = _pick(rng, ADJECTIVES) + " " if rng.random() < 0.55 else ""
    if r < 0.22:
        plural = noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")
        if plural.endswith("ys") and noun[-2] not in "aeiou":
            plural = noun[:-1] + "ies"
        return f"{_pick(rng, NUMBERS)} {adj}{plural}"
    det = "a" if rng.random() < 0.3 else "the"
    if det == "a" and (adj or noun)[0] in "aeiou":
        det = "an"
    return f"{det} {adj}{noun}"


_TEMPLATES = (
    lambda r: f"{_np(r)} {_pick(r, VERBS_PAST)} {_np(r)}",
    lambda r: f"{_np(r)} {_pick(r, VERBS_PAST)} {_np(r)} {_pick(r, PLACES)}",
    lambda r: f"{_np(r)} {_pick(r, INTRANSITIVE_PAST)} {_pick(r, PLACES)}",
    lambda r: f"{_np(r)} {_pick(r, INTRANSITIVE_PAST)} {_pick(r, ADVERBS)}",
    lambda r: f"please {_pick(r, VERBS_BASE)} {_np(r)} {_pick(r, PLACES)}",
    lambda r: f"did you {_pick(r, VERBS_BASE)} {_np(r)} {_pick(r, TIMES)}?",
    lambda r: f"I think {_np(r)} is {_pick(r, ADJECTIVES)}",
    lambda r: f"{_pick(r, TIMES)} {_np(r)} {_pick(r, VERBS_PAST)} {_np(r)}",
    lambda r: f"where is {_np(r)}?",
    lambda r: f"we {_pick(r, VERBS_PAST)} {_np(r)} and {_np(r)}",
    lambda r: f"{_np(r)} was {_pick(r, ADJECTIVES)} and {_pick(r, ADJECTIVES)}",
    lambda r: f"{_pick(r, NAMES)} said that {_np(r)} {_pick(r, INTRANSITIVE_PAST)}",
)


def make_sentence(rng: np.random.Generator) -> str:
    """One random sentence (3-14 words), capitalised, ending in '.', '?' or '!'."""
    text = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))](rng)
    if not text.endswith("?"):
        text += "!" if rng.random() < 0.08 else "."
    return text[0].upper() + text[1:]
