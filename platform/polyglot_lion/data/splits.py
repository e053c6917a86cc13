"""A seeded, speaker-disjoint test split for corpora that ship none (NSC, SLR65, Mesolitica).

Pure: the same items and seed give the same split on any machine. Speakers (groups of items) are shuffled
with the seed and taken into the test split until it holds at least the target number of utterances, never
more than half of the corpus; a speaker whose utterances would pass that half is skipped. Items with no
speaker are each their own group.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class MadeSplit:
    test_keys: frozenset[str]
    test_speakers: tuple[str, ...]
    seed: int
    target: int

    def split_of(self, key: str) -> str:
        return "test" if key in self.test_keys else "train"

    def describe(self) -> dict:
        """What goes into the partitions' meta (in _commit.json), so that evaluation and a re-import know the rule."""
        return {"rule": "speaker-disjoint, seeded", "seed": self.seed, "test_utterances_target": self.target,
                "test_utterances": len(self.test_keys), "test_speakers": list(self.test_speakers)}


def speaker_disjoint_split(keys_and_speakers: list[tuple[str, str | None]], test_utterances: int,
                           seed: int = 0) -> MadeSplit:
    """Split ``(key, speaker)`` pairs into train and test: no speaker in both, test >= ``test_utterances``
    where the corpus allows, test <= half of the corpus."""
    if test_utterances < 1:
        raise ValueError(f"test_utterances must be at least 1 (is {test_utterances})")
    groups: dict[str, list[str]] = {}
    for key, speaker in keys_and_speakers:
        groups.setdefault(speaker if speaker else f"\0{key}", []).append(key)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    cap = len(keys_and_speakers) // 2
    test: list[str] = []
    speakers: list[str] = []
    for g in order:
        if len(test) >= test_utterances:
            break
        if len(test) + len(groups[g]) > cap:
            continue
        test += groups[g]
        speakers.append(g.lstrip("\0"))
    return MadeSplit(frozenset(test), tuple(sorted(speakers)), seed, test_utterances)
