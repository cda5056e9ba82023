"""'Did you mean ...?' suggestions for misspelt names and functions."""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(word: str, candidates: Iterable[str], limit: int = 1) -> list[str]:
    """The known names closest to ``word``, best first (empty if none is close)."""
    known = sorted(set(candidates))
    # A difference in letter case only is the most likely slip.
    same_case = [c for c in known if c.lower() == word.lower() and c != word]
    if same_case:
        return same_case[:limit]
    return difflib.get_close_matches(word, known, n=limit, cutoff=0.6)


def hint(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or ''."""
    best = did_you_mean(word, candidates)
    return f" (did you mean '{best[0]}'?)" if best else ""
