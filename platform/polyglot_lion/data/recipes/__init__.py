"""Corpus recipes: each of the paper's twelve corpora imported from the folder its publisher ships.

    polyglot-lion recipes                                        # what each expects and where to get it
    polyglot-lion prepare --recipe nsc --input downloads/nsc --store store/
    polyglot-lion prepare --recipe commonvoice --language ta --input downloads/cv --store store/

A recipe lists *source items* (see ``data/importers.py``) with their split, without decoding audio: archives
that are part of the corpus's layout are read in place by the Ray Data tasks (``data/archives.py``), long
recordings become segments, and the text is cleaned by the recipe's named cleaner (``data/cleaners.py``)
before the shared normaliser. Corpora without an official split get a seeded, speaker-disjoint one
(``data/splits.py``) sized like the paper's test set. The store dataset names are the benchmark keys of
``evaluation/benchmarks.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecipeOptions:
    language: str | None = None  # for recipes that cover several languages (commonvoice, fleurs)
    extra: dict = field(default_factory=dict)


@dataclass
class Listing:
    """What a recipe found: items (each with its ``split``; None: from the archive member's folder) and the
    records it rejected while listing (``{source, reason, detail, split}``)."""

    items: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)

    def reject(self, source: str, reason: str, detail: str = "", split: str | None = None) -> None:
        self.rejects.append({"source": source, "reason": reason, "detail": detail, "split": split})


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    datasets: dict[str, str]  # language -> store dataset name (= benchmark key)
    splits: tuple[str, ...]  # the splits it writes
    lister: Callable[[str, RecipeOptions], Listing]
    download: str  # where to get it
    expects: str  # what --input must be (what to unpack, what may stay packed)
    cleans: str  # what it does to the text
    cleaner: str | None = None  # name in data/cleaners.CLEANERS
    made_split_test: int | None = None  # the corpus ships no split: test utterances of a made split (paper's size)

    def dataset_for(self, language: str | None) -> str:
        if language is None and len(self.datasets) == 1:
            return next(iter(self.datasets.values()))
        if language not in self.datasets:
            raise ValueError(f"recipe {self.name}: --language must be one of {sorted(self.datasets)} (is {language!r})")
        return self.datasets[language]

    def language_for(self, language: str | None) -> str:
        return language if language is not None else next(iter(self.datasets))


def _registry() -> dict[str, Recipe]:
    # the recipe modules import Recipe and Listing from this package: imported here, when first asked for
    from . import aishell, commonvoice, fleurs, librispeech, mesolitica, nsc, openslr

    recipes = [librispeech.RECIPE, nsc.RECIPE, commonvoice.RECIPE, aishell.AISHELL1, aishell.AISHELL3,
               fleurs.RECIPE, openslr.SLR65, openslr.SLR127, mesolitica.RECIPE]
    return {r.name: r for r in recipes}


def recipes() -> dict[str, Recipe]:
    """Every recipe by name, in the paper's column order."""
    return _registry()


def get_recipe(name: str) -> Recipe:
    known = recipes()
    if name not in known:
        raise ValueError(f"recipe must be one of {sorted(known)} (is {name!r})")
    return known[name]


def format_recipes() -> str:
    """The table `polyglot-lion recipes` prints."""
    out = []
    for r in recipes().values():
        langs = ", ".join(f"{lang} -> {ds}" for lang, ds in r.datasets.items())
        split = ", ".join(r.splits) + (f" (made: speaker-disjoint test of {r.made_split_test})"
                                       if r.made_split_test else " (publisher's)")
        out.append(f"{r.name}: {r.title}\n  datasets: {langs}\n  splits:   {split}\n  download: {r.download}\n"
                   f"  --input:  {r.expects}\n  cleans:   {r.cleans}")
    return "\n\n".join(out)
