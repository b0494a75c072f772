"""Text shared by every layer: values as shown to people, name folding, and did-you-mean hints."""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable
from typing import Any


def alias_key(text: str) -> str:
    """Fold case, spaces, underscores and hyphens so 'In Transit' and 'in_transit' meet."""
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


ECHO_LIMIT = 200  # characters of a bad value an error message shows: a 9 MB value must not make a 9 MB error


def echo(value: Any) -> str:
    """repr of a bad value as an error message shows it: past ECHO_LIMIT characters it is cut, its length said."""
    if isinstance(value, str):  # cut before repr: the quotes stay balanced
        if len(value) <= ECHO_LIMIT:
            return repr(value)
        short = repr(value[:ECHO_LIMIT])
        return f"{short[:-1]}…{short[-1]} ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= ECHO_LIMIT else f"{text[:ECHO_LIMIT]}… ({len(text):,} characters)"


def format_value(value: Any) -> str:
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_tenths(tenths(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def tenths(value: float) -> int:
    """A number rounded to tenths, half up; the batch path does the same arithmetic in numpy."""
    return int(math.floor(value * 10 + 0.5))


def format_tenths(count: int) -> str:
    sign, count = ("-", -count) if count < 0 else ("", count)
    whole, tenth = divmod(count, 10)
    return f"{sign}{whole}" if tenth == 0 else f"{sign}{whole}.{tenth}"


def humanize(name: str) -> str:
    return name.replace("_", " ").capitalize()


def did_you_mean(word: object, choices: Iterable[object], cutoff: float = 0.6, fold: bool = False) -> str | None:
    """The choice most like word by difflib's ratio (at least cutoff), or None.

    Rule files compare names exactly. fold=True compares with case, spaces, '_' and '-' folded, answering the
    first of the choices that fold alike (how order fields and enum values are matched), and caches answers."""
    text = alias_key(str(word)) if fold else str(word)
    options = tuple(str(c) for c in choices)
    # A ratio of 0.6 needs the text within 7/3 of a choice's length: a longer one matches nothing, and neither
    # difflib (it indexes each character first: a 9 MB value took 2 s and 360 MB) nor a cache should see it.
    if not options or len(text) > 3 * max(map(len, options)):
        return None
    if fold:
        return _closest_folded(text, options, cutoff)
    found = difflib.get_close_matches(text, options, n=1, cutoff=cutoff)
    return found[0] if found else None


@functools.lru_cache(maxsize=64)  # one entry per fact (or field list) asked about: a few per policy
def _folded(spellings: tuple[str, ...]) -> dict[str, str]:
    folded: dict[str, str] = {}
    for spelling in spellings:
        folded.setdefault(alias_key(spelling), spelling)  # of spellings that fold alike, the first is shown
    return folded


# Keyed by the text and every candidate spelling, so a changed policy never gets an old hint; 4,096 entries
# keep a batch full of one typo from running difflib once per row.
@functools.lru_cache(maxsize=4096)
def _closest_folded(key: str, spellings: tuple[str, ...], cutoff: float) -> str | None:
    folded = _folded(spellings)
    found = difflib.get_close_matches(key, folded, n=1, cutoff=cutoff)
    return folded[found[0]] if found else None
