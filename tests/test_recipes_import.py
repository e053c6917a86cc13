"""The twelve corpora imported through a real local Ray session, as jobs/configs/corpora/paper.yaml imports them,
and lhotse manifests written by lhotse itself."""

import collections
import fnmatch
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from polyglot_lion.data.prepare import ImportSpec, PrepareOptions, load_specs, prepare
from polyglot_lion.data.stats import store_stats
from polyglot_lion.data.store import list_partitions, read_metadata
from polyglot_lion.evaluation.benchmarks import BENCHMARKS
from polyglot_lion.testing import tone
from polyglot_lion.testing.corpora import make_fleurs, make_librispeech, make_paper_downloads

pytestmark = pytest.mark.ray

PAPER_YAML = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "corpora" / "paper.yaml"
OPTS = PrepareOptions(batch_size=4)


@pytest.fixture(scope="module")
def paper_store(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    minis = make_paper_downloads(root)
    store = tmp_path_factory.mktemp("paper_store")
    metas = prepare(load_specs(str(PAPER_YAML), root=str(root)), str(store), OPTS)
    return store, minis, metas, root


def test_paper_yaml_imports_all_twelve_in_one_job(paper_store):
    store, _, metas, _ = paper_store
    assert {m["dataset"] for m in metas} == set(BENCHMARKS)
    stats = store_stats(str(store))
    assert {key.split("/")[0] for key in stats["datasets"]} == set(BENCHMARKS)
    assert set(stats["languages"]) == {"en", "zh", "ta", "ms"}


def test_each_recipe_imports_its_miniature_exactly(paper_store):
    store, minis, metas, _ = paper_store
    meta = read_metadata(str(store))
    rows = meta.to_pylist()
    for m in minis:
        parts = [x for x in metas if x["dataset"] == m.dataset]
        got_rejected = collections.Counter()
        for x in parts:
            got_rejected.update(x["rejected"])
        assert sum(x["utterances"] for x in parts) == m.accepted, m.dataset
        assert dict(got_rejected) == m.rejected, m.dataset
        if m.splits is not None:
            assert {x["split"]: x["utterances"] for x in parts} == m.splits, m.dataset
        mine = {r["id"]: r for r in rows if r["dataset"] == m.dataset}
        for pattern, text in m.texts.items():
            hits = [r for i, r in mine.items() if fnmatch.fnmatchcase(i, pattern)]
            assert [r["text"] for r in hits] == [text], (m.dataset, pattern)
        for pattern, seconds in m.durations.items():
            [hit] = [r for i, r in mine.items() if fnmatch.fnmatchcase(i, pattern)]
            assert hit["duration_s"] == pytest.approx(seconds, abs=1e-3), pattern
        assert all(r["language"] == BENCHMARKS[m.dataset].language for r in mine.values())


def test_evaluation_says_which_made_split_it_scored(paper_store, tiny_checkpoint):
    from polyglot_lion.evaluation.evaluate import evaluate

    store, _, _, _ = paper_store
    out = evaluate(tiny_checkpoint, str(store), benchmarks=["nsc", "librispeech"], log_to_mlflow=False,
                   progress=False, max_utterances=2)
    assert out["benchmarks"]["nsc"]["split_rule"] == {"rule": "speaker-disjoint, seeded", "seed": 0,
                                                      "test_utterances_target": 3000}
    assert "split_rule" not in out["benchmarks"]["librispeech"]


def test_every_reject_is_listed_with_its_source(paper_store):
    store, _, _, _ = paper_store
    for p in list_partitions(store):
        rejects = p.rejects()
        assert collections.Counter(r["reason"] for r in rejects) == collections.Counter(p.meta["rejected"])
        assert all(r["source"] for r in rejects)
    aishell = [r for p in list_partitions(store) if p.dataset == "aishell1" for r in p.rejects()]
    assert {r["reason"] for r in aishell} == {"missing_audio", "missing_transcript", "unreadable_audio"}
    assert any("S0002.tar.gz::train/S0002/BAC009S0002W0125.wav" in r["source"] for r in aishell)


def test_archives_and_segments_decode_to_the_store_format(paper_store):
    store, _, _, _ = paper_store
    for p in list_partitions(store):
        if p.dataset not in ("nsc", "slr65", "mesolitica", "aishell1", "fleurs-zh"):
            continue
        for f in p.files:
            for row in pq.read_table(f).to_pylist():
                info = sf.info(io.BytesIO(row["audio"]))
                assert (info.format, info.samplerate, info.channels) == ("FLAC", 16_000, 1)
                assert info.duration == pytest.approx(row["duration_s"], abs=1e-3)


def test_made_splits_are_speaker_disjoint_recorded_and_stable(paper_store, ray_session, tmp_path):
    store, minis, _, root = paper_store
    meta = read_metadata(str(store)).to_pylist()
    for dataset in ("nsc", "slr65", "mesolitica"):
        rows = [r for r in meta if r["dataset"] == dataset]
        test = {r["speaker"] for r in rows if r["split"] == "test"}
        train = {r["speaker"] for r in rows if r["split"] == "train"}
        assert test and train and not test & train, dataset
        assert sum(r["split"] == "test" for r in rows) <= len(rows) / 2 + 1, dataset
        rule = next(p for p in list_partitions(store, "test") if p.dataset == dataset).meta["split_rule"]
        assert rule["seed"] == 0 and sorted(rule["test_speakers"]) == sorted(test), dataset
    # a re-import gives the same ids and the same split; another seed may move speakers, never mixes them
    again = prepare([ImportSpec(input=str(root / "slr65"), recipe="slr65")], str(tmp_path), OPTS)
    first = sorted((r["id"], r["split"]) for r in meta if r["dataset"] == "slr65")
    assert sorted((r["id"], r["split"]) for r in read_metadata(str(tmp_path)).to_pylist()) == first
    assert {m["split"]: m["utterances"] for m in again} == {
        m["split"]: m["utterances"] for m in (x.meta for x in list_partitions(store)) if m["dataset"] == "slr65"}


def test_a_tar_gz_holding_most_of_a_corpus_shares_its_chunks_with_helper_tasks(ray_session, tmp_path):
    """FLEURS ships a split as one tar.gz: its task reads it in one pass and hands chunks to helper tasks (see
    prepare.import_block), and the import is exactly the miniature's, every reading kept once."""
    from polyglot_lion.data.prepare import _blocks, _list_recipe, _plan, helpers_for, share_of

    m = make_fleurs(tmp_path / "fleurs", "zh", scale=40)
    spec = ImportSpec(recipe="fleurs", language="zh", input=m.input)
    targets, routes = _plan([spec])
    items, _ = _list_recipe(0, spec, targets, routes)
    share = share_of(len(items), ray_session.cluster_resources()["CPU"])
    train = max(len(b) for b in _blocks(items, OPTS.batch_size))
    assert helpers_for(train, OPTS.batch_size, share) >= 2  # the path under test is taken
    metas = prepare([spec], str(tmp_path / "store"), OPTS)
    assert {x["split"]: x["utterances"] for x in metas} == m.splits
    rejected = collections.Counter()
    for x in metas:
        rejected.update(x["rejected"])
    assert dict(rejected) == m.rejected
    ids = [r["id"] for r in read_metadata(str(tmp_path / "store")).to_pylist()]
    assert len(ids) == len(set(ids)) == m.accepted
    assert {f"fleurs-zh/train/s{i}" for i in range(40)} <= set(ids)


def _lhotse_segments(root: Path) -> tuple[str, str]:
    """A long recording with three supervisions at offsets, written by lhotse as a RecordingSet +
    SupervisionSet pair and as a CutSet."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    root.mkdir(parents=True)
    sf.write(str(root / "talk.wav"), tone(6.0, 22_050, seed=3), 22_050)
    rec = Recording.from_file(str(root / "talk.wav"), recording_id="talk")
    sups = [SupervisionSegment(f"talk-{i}", "talk", start, dur, channel=0, text=text, speaker="spk1", language="Malay")
            for i, (start, dur, text) in enumerate([(0.5, 1.0, "Selamat pagi!"), (2.0, 1.5, "Apa khabar?"),
                                                     (5.5, 1.0, "past the end")])]
    RecordingSet.from_recordings([rec]).to_file(str(root / "talk_recordings_test.jsonl.gz"))
    SupervisionSet.from_segments(sups).to_file(str(root / "talk_supervisions_test.jsonl.gz"))
    cuts = CutSet.from_manifests(RecordingSet.from_recordings([rec]), SupervisionSet.from_segments(sups[:2]))
    cuts.trim_to_supervisions(keep_overlapping=False).to_file(str(root / "talk_cuts_test.jsonl"))
    return str(root / "talk_supervisions_test.jsonl.gz"), str(root / "talk_cuts_test.jsonl")


def test_lhotse_manifests_import_as_the_native_recipe_does(ray_session, tmp_path):
    from lhotse.recipes.librispeech import prepare_librispeech

    corpus = tmp_path / "ls"
    make_librispeech(corpus)
    # lhotse's writer stops at a FLAC it cannot read (our recipe counts it as unreadable_audio): leave it out
    next(corpus.rglob("103-1240-0008.flac")).unlink()
    manifests = tmp_path / "manifests"
    prepare_librispeech(corpus / "LibriSpeech", output_dir=str(manifests))  # lhotse's own writer
    parts = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test"}
    sups, cuts = _lhotse_segments(tmp_path / "seg")
    specs = [ImportSpec("lhotse", str(manifests / f"librispeech_supervisions_{part}.jsonl.gz"), "librispeech",
                        "en", split) for part, split in parts.items()]
    specs += [ImportSpec("lhotse", sups, "talk", "ms", "test"), ImportSpec("lhotse", cuts, "talk-cuts", "ms", "test")]
    via_lhotse = tmp_path / "via_lhotse"
    metas = prepare(specs, str(via_lhotse), OPTS)
    native = tmp_path / "native"
    prepare([ImportSpec(input=str(corpus), recipe="librispeech")], str(native), OPTS)

    def rows(store):
        t = read_metadata(str(store)).to_pylist()
        return {r["id"]: (r["text"], r["raw_text"], r["speaker"], round(r["duration_s"], 4), r["split"])
                for r in t if r["dataset"] == "librispeech"}

    assert rows(via_lhotse) == rows(native) and len(rows(native)) == 4
    audio = {}
    for store in (via_lhotse, native):
        for p in list_partitions(store):
            if p.dataset == "librispeech":
                for f in p.files:
                    t = pq.read_table(f, columns=["id", "audio"])
                    for i, a in zip(t["id"].to_pylist(), t["audio"].to_pylist()):
                        audio.setdefault(i, []).append(a)
    assert all(len(v) == 2 and v[0] == v[1] for v in audio.values())  # the same FLAC bytes
    seg = {m["dataset"]: m for m in metas}
    assert seg["talk"]["utterances"] == 2 and seg["talk"]["rejected"] == {"bad_segment": 1}
    assert seg["talk-cuts"]["utterances"] == 2 and seg["talk-cuts"]["rejected"] == {}
    got = {r["id"]: (r["text"], round(r["duration_s"], 3)) for r in read_metadata(str(via_lhotse)).to_pylist()
           if r["dataset"].startswith("talk")}
    assert got["talk/test/talk-0"] == ("selamat pagi", 1.0) and got["talk/test/talk-1"] == ("apa khabar", 1.5)
    assert sorted(v for k, v in got.items() if k.startswith("talk-cuts/")) == [("apa khabar", 1.5),
                                                                               ("selamat pagi", 1.0)]
    json.dumps(metas)
