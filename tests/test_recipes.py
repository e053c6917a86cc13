"""Corpus recipes without Ray: cleaners, made splits, TextGrids, archive members, listing each publisher layout."""

import collections
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from polyglot_lion.data.archives import MemberError, iter_members, list_members
from polyglot_lion.data.cleaners import join_cjk_words, strip_nsc_markup, strip_pinyin
from polyglot_lion.data.prepare import ImportSpec, load_specs, validate_specs
from polyglot_lion.data.recipes import RecipeOptions, format_recipes, get_recipe, recipes
from polyglot_lion.data.recipes.nsc import parse_script
from polyglot_lion.data.splits import speaker_disjoint_split
from polyglot_lion.data.text import normalize_text
from polyglot_lion.data.textgrids import TextGridError, decode_textgrid_bytes, read_intervals
from polyglot_lion.evaluation.benchmarks import BENCHMARKS
from polyglot_lion.testing.corpora import make_nsc, make_paper_downloads

PAPER_YAML = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "corpora" / "paper.yaml"


def test_strip_pinyin_keeps_only_the_characters():
    assert strip_pinyin("广 guang3 州 zhou1 女 nv3 大 da4 学 xue2") == "广 州 女 大 学"
    assert strip_pinyin("绿 lv4 色 se4 的 de5") == "绿 色 的"
    assert strip_pinyin("用 yong4 iPhone 打 da3") == "用 iPhone 打"  # a Latin word without a tone digit stays


def test_join_cjk_words_removes_segmentation_spaces_only():
    assert join_cjk_words("而 对 楼市 成交 抑制") == "而对楼市成交抑制"
    assert join_cjk_words("我 用 iPhone 打 电话") == "我用 iPhone 打电话"


@pytest.mark.parametrize("raw, cleaned", [
    ("it's <FIL/> time [lah]", "it's time lah"),
    ("!wah! the (ppl) hel~ hello #makan# <UNK>", "wah the hello makan"),
    ("<SPK/> <NON/> <STA/> <S> <Z> (ppb) (ppc) (ppo)", ""),
    ("okay [leh] can ~", "okay leh can"),
])
def test_nsc_markup(raw, cleaned):
    assert strip_nsc_markup(raw) == cleaned
    assert "fil" not in normalize_text(strip_nsc_markup(raw)).split()


def test_nsc_script_uses_the_normalised_line():
    lines = ["000010001\tIt's time, lah!", "\tit's time [lah]", "000010002\tNo second line here.",
             "000010003\tOK.", "\tok"]
    assert parse_script(lines) == [("000010001", "it's time [lah]", "It's time, lah!", 1),
                                   ("000010002", "No second line here.", "No second line here.", 3),
                                   ("000010003", "ok", "OK.", 4)]


def test_made_split_is_speaker_disjoint_seeded_and_at_most_half():
    pairs = [(f"u{i}", f"s{i % 10}") for i in range(100)]  # 10 speakers x 10 utterances
    a = speaker_disjoint_split(pairs, 30, seed=0)
    assert a == speaker_disjoint_split(pairs, 30, seed=0)  # same seed, same split
    assert len(a.test_keys) == 30 and len(a.test_speakers) == 3
    test_speakers = {s for k, s in pairs if k in a.test_keys}
    assert test_speakers == set(a.test_speakers)
    assert not test_speakers & {s for k, s in pairs if k not in a.test_keys}
    assert speaker_disjoint_split(pairs, 30, seed=1).test_speakers != a.test_speakers
    assert len(speaker_disjoint_split(pairs, 3000, seed=0).test_keys) == 50  # never more than half
    no_speakers = speaker_disjoint_split([(f"u{i}", None) for i in range(9)], 3, seed=0)
    assert len(no_speakers.test_keys) == 3
    assert a.describe()["test_speakers"] == list(a.test_speakers)
    with pytest.raises(ValueError, match="test_utterances must be at least 1"):
        speaker_disjoint_split(pairs, 0)


TEXTGRID = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 3
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "IntervalTier"
        name = "spk"
        xmin = 0
        xmax = 3
        intervals: size = 2
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = "ok lor 好"
        intervals [2]:
            xmin = 1.5
            xmax = 3
            text = ""
'''


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be"])
def test_textgrids_in_every_encoding(tmp_path, encoding):
    data = TEXTGRID.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    (tmp_path / "a.TextGrid").write_bytes(data)
    assert decode_textgrid_bytes(data) == TEXTGRID
    [iv] = read_intervals(tmp_path / "a.TextGrid")
    assert (iv.tier, iv.start, iv.end, iv.label) == ("spk", 0.0, 1.5, "ok lor 好")


def test_textgrid_that_does_not_parse(tmp_path):
    (tmp_path / "bad.TextGrid").write_text('File type = "ooTextFile"\nnot a textgrid\n')
    with pytest.raises(TextGridError):
        read_intervals(tmp_path / "bad.TextGrid")


def test_archive_members_bounded_and_only_regular_files(tmp_path):
    tar = tmp_path / "a.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        for name, data in (("x/a.wav", b"A" * 10), ("x/big.wav", b"B" * 5000), ("x/a.wav", b"second")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("x/link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
        hard = tarfile.TarInfo("x/hard.wav")
        hard.type, hard.linkname = tarfile.LNKTYPE, "x/a.wav"
        t.addfile(hard)
    got = [(n, d if isinstance(d, bytes) else d.reason) for n, d in iter_members(str(tar), max_bytes=1000)]
    assert got == [("x/a.wav", b"A" * 10), ("x/big.wav", "member_too_large"), ("x/a.wav", b"second"),
                   ("x/link.wav", "not_a_regular_file"), ("x/hard.wav", "not_a_regular_file")]
    assert [m.regular for m in list_members(str(tar))] == [True, True, True, False, False]
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.wav", b"zzz")
        info = zipfile.ZipInfo("link.wav")
        info.create_system, info.external_attr = 3, (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    assert [(n, d if isinstance(d, bytes) else d.reason) for n, d in iter_members(str(z))] == [
        ("a.wav", b"zzz"), ("link.wav", "not_a_regular_file")]
    noise = tmp_path / "noise.tar.gz"  # incompressible, so that cutting it cuts into the members
    with tarfile.open(noise, "w:gz") as t:
        info = tarfile.TarInfo("n.wav")
        info.size = 4000
        t.addfile(info, io.BytesIO(os.urandom(4000)))
    (tmp_path / "broken.tar.gz").write_bytes(noise.read_bytes()[:2000])
    with pytest.raises(MemberError, match="unreadable_member"):
        list(iter_members(str(tmp_path / "broken.tar.gz")))
    # damage in the middle: tarfile alone would end the listing early without a word
    with tarfile.open(noise, "w:gz") as t:
        for i in range(3):
            info = tarfile.TarInfo(f"n{i}.wav")
            info.size = 4000
            t.addfile(info, io.BytesIO(bytes(range(256)) * 15 + bytes(160)))
    damaged = bytearray(noise.read_bytes())
    for i in range(len(damaged) // 2, len(damaged) // 2 + 40):
        damaged[i] ^= 0x5A
    (tmp_path / "damaged.tar.gz").write_bytes(bytes(damaged))
    for read in (lambda p: list(iter_members(p)), list_members):
        with pytest.raises(MemberError, match="unreadable_member"):
            read(str(tmp_path / "damaged.tar.gz"))


def test_recipes_cover_the_twelve_benchmarks():
    datasets = {ds for r in recipes().values() for ds in r.datasets.values()}
    assert datasets == set(BENCHMARKS)
    text = format_recipes()
    for r in recipes().values():
        assert r.name in text and r.download in text
    assert {r.name: r.made_split_test for r in recipes().values() if r.made_split_test} == {
        "nsc": 3000, "slr65": 429, "mesolitica": 993}  # the paper's test set sizes


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    return root, make_paper_downloads(root)


def test_every_recipe_lists_its_miniature(downloads):
    _, minis = downloads
    for m in minis:
        listing = get_recipe(m.recipe).lister(m.input, RecipeOptions(language=m.language))
        # nothing is decoded while listing: audio found later to be missing or corrupt is still an item
        decode_time = {"missing_audio", "unreadable_audio", "unreadable_member", "too_long", "empty_text",
                       "bad_segment"}
        listed_rejects = collections.Counter(r["reason"] for r in listing.rejects)
        assert set(listed_rejects) <= set(m.rejected), (m.recipe, listed_rejects)
        assert len(listing.items) + sum(listed_rejects.values()) <= m.accepted + sum(m.rejected.values()), m.recipe
        assert len(listing.items) >= m.accepted, m.recipe
        assert all(r["reason"] not in decode_time - {"missing_audio"} for r in listing.rejects), m.recipe
        keys = [it["key"] for it in listing.items]
        assert len(keys) == len(set(keys)), m.recipe  # no two readings share a key (FLEURS)


def test_fleurs_keeps_every_reading_of_a_prompt_and_the_first_row(downloads):
    root, _ = downloads
    listing = get_recipe("fleurs").lister(str(root / "fleurs"), RecipeOptions(language="ms"))
    train = [it for it in listing.items if it["split"] == "train"]
    assert [it["key"] for it in train][:3] == ["1001a", "1001b", "1002a"]  # no header row eaten
    assert train[0]["raw_text"] == train[1]["raw_text"] == "ini ayat pertama"  # the transcription column


def test_aishell3_pinyin_never_reaches_the_text(downloads):
    root, _ = downloads
    listing = get_recipe("aishell3").lister(str(root / "aishell3"), RecipeOptions())
    first = next(it for it in listing.items if it["key"] == "SSB00050001")
    assert normalize_text(strip_pinyin(first["raw_text"])) == "广州女大学生"


def test_nsc_lists_archives_in_place_and_textgrid_segments(tmp_path):
    m = make_nsc(tmp_path)
    listing = get_recipe("nsc").lister(m.input, RecipeOptions())
    by_key = {it["key"]: it for it in listing.items}
    p1 = by_key["part1-000010001"]
    assert p1["archive"].endswith("SPEAKER0001.zip") and p1["member"] == "SPEAKER0001/SESSION0/000010001.WAV"
    assert p1["raw_text"] == "it's <FIL/> time [lah]"  # the normalised line, BOM and CR gone
    seg = by_key["part3-3000-1-000000500"]
    assert (seg["start_s"], seg["end_s"]) == (0.5, 2.0) and seg["audio_path"].endswith("3000-1.wav")
    assert by_key["part4-4000-1-000000250"]["raw_text"] == "can or not"  # UTF-8-BOM TextGrid in '... - Additional'
    reasons = collections.Counter(r["reason"] for r in listing.rejects)
    assert reasons == {"missing_audio": 1, "missing_transcript": 1, "unreadable_textgrid": 1}


def test_paper_yaml_names_all_twelve_and_resolves_inputs_against_root(downloads):
    root, minis = downloads
    specs = load_specs(str(PAPER_YAML), root=str(root))
    assert len(specs) == 12
    assert sorted(s.targets()[0][0] for s in specs) == sorted(BENCHMARKS)
    assert all(s.input.startswith(str(root)) for s in specs)
    validate_specs(specs)
    default = load_specs(str(PAPER_YAML))  # the file's own root: jobs/configs/corpora/downloads
    assert default[0].input == os.path.join(PAPER_YAML.parent, "downloads", "librispeech")


def test_bad_recipe_specs_fail_with_every_problem(tmp_path):
    with pytest.raises(ValueError) as e:
        validate_specs([ImportSpec(input=str(tmp_path), recipe="commonvoice"),
                        ImportSpec(input=str(tmp_path), recipe="librispeech", dataset="ls", test_utterances=5),
                        ImportSpec(input=str(tmp_path / "nope"), recipe="nsc", test_utterances=0),
                        ImportSpec(input=str(tmp_path), recipe="fleurs", language="fr")])
    msg = str(e.value)
    for part in ("recipe commonvoice: --language must be one of ['ta', 'zh'] (is None)",
                 "dataset come(s) from the recipe", "test_utterances is only for corpora with no official split",
                 "does not exist", "test_utterances must be at least 1 (is 0)",
                 "recipe fleurs: --language must be one of ['ms', 'ta', 'zh'] (is 'fr')"):
        assert part in msg
    with pytest.raises(ValueError, match="dataset/split cv-zh/train is also import 0"):
        validate_specs([ImportSpec(input=str(tmp_path), recipe="commonvoice", language="zh"),
                        ImportSpec("jsonl", str(tmp_path), "cv-zh", "zh", "train")])


def test_a_download_in_the_wrong_place_is_named(tmp_path):
    for name, language in (("librispeech", None), ("nsc", None), ("commonvoice", "zh"), ("aishell1", None),
                           ("aishell3", None), ("fleurs", "ta"), ("slr65", None), ("slr127", None),
                           ("mesolitica", None)):
        with pytest.raises(ValueError, match=str(tmp_path)):
            get_recipe(name).lister(str(tmp_path), RecipeOptions(language=language))


def test_cli_recipes_and_prepare_usage_errors(tmp_path, capsys):
    from polyglot_lion.cli import main

    assert main(["recipes", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(recipes()) and listed["nsc"]["made_split_test"] == 3000
    store = str(tmp_path / "store")
    for argv, message in (
        (["--recipe", "commonvoice", "--input", str(tmp_path)], "--language must be one of ['ta', 'zh']"),
        (["--recipe", "nsc"], "prepare --recipe needs --input"),
        (["--recipe", "nsc", "--input", str(tmp_path), "--dataset", "x"], "--recipe names the dataset"),
        (["--recipe", "nsc", "--input", str(tmp_path / "missing")], "does not exist"),
        (["--specs", str(PAPER_YAML), "--recipe", "nsc"], "--specs replaces"),
    ):
        assert main(["prepare", "--store", store, *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not os.path.exists(store)  # refused before anything was written or Ray started


def test_unpacked_layouts_count_audio_without_transcript(tmp_path):
    from polyglot_lion.testing.corpora import make_fleurs, make_slr65

    fleurs = make_fleurs(tmp_path / "fleurs", "ms")
    audio = Path(fleurs.input) / "data" / "ms_my" / "audio"
    for split in ("train", "dev", "test"):
        with tarfile.open(audio / f"{split}.tar.gz") as t:
            t.extractall(audio, filter="data")
        (audio / f"{split}.tar.gz").unlink()
    listing = get_recipe("fleurs").lister(fleurs.input, RecipeOptions(language="ms"))
    assert [(r["reason"], Path(r["source"]).name) for r in listing.rejects if r["reason"] != "malformed_manifest"] == [
        ("missing_transcript", "orphan.wav")]
    assert all(it["audio_path"] and not it["archive"] for it in listing.items)
    slr = make_slr65(tmp_path / "slr65")
    for z in Path(slr.input).glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            good = [n for n in zf.namelist() if "0002" not in n or "taf" in n]  # the CRC-damaged member stays out
            zf.extractall(Path(slr.input) / z.stem, members=good)
        z.unlink()
    listing = get_recipe("slr65").lister(slr.input, RecipeOptions())
    assert collections.Counter(r["reason"] for r in listing.rejects) == {"missing_audio": 2, "missing_transcript": 1}


def test_import_blocks_split_zips_by_member_and_keep_each_tar_whole(tmp_path):
    """prepare's tasks: loose files and a zip's named members in blocks of block_rows (a zip is read by name, so
    a corpus of a few large zips keeps every CPU busy), a tar.gz whole (no index: one task, one pass)."""
    from polyglot_lion.data.prepare import _blocks, _list_recipe, _plan

    for m in make_paper_downloads(tmp_path, scale=40):
        spec = ImportSpec(recipe=m.recipe, language=m.language or "", input=m.input)
        targets, routes = _plan([spec])
        items, _ = _list_recipe(0, spec, targets, routes)
        blocks = [b.to_pylist() for b in _blocks(items, block_rows=16)]
        assert sorted(it["source"] for b in blocks for it in b) == sorted(it["source"] for it in items), m.dataset
        assert [len(b) for b in blocks] == sorted((len(b) for b in blocks), reverse=True), m.dataset
        by_archive = collections.defaultdict(list)
        for b in blocks:
            archives = {it["archive"] for it in b}
            assert len(archives) == 1, (m.dataset, archives)  # a block never mixes archives, or loose and packed
            by_archive[archives.pop()].append(len(b))
        for archive, sizes in by_archive.items():
            if archive and archive.endswith(".tar.gz"):
                assert len(sizes) == 1, (m.dataset, archive)
            else:
                assert max(sizes) <= 16 and sum(sizes) == sum(1 for it in items if it["archive"] == archive)
        if m.recipe in ("slr65", "mesolitica"):  # 40 clips more in one zip: read by three tasks
            assert max(len(s) for a, s in by_archive.items() if a) == 3, m.dataset


def test_helpers_only_for_a_block_beyond_its_share_and_bounded():
    from polyglot_lion.data.prepare import MAX_HELPERS, helpers_for

    assert helpers_for(800, 128, None) == 0  # no share known (a Parquet-only import)
    assert helpers_for(800, 128, 3200) == 0  # AISHELL-1 on 2 CPUs: eight archives, each within its share
    assert helpers_for(100, 128, 10) == 0  # one chunk: nothing to hand on
    assert helpers_for(1600, 128, 803) == 2  # FLEURS's train split on 2 CPUs: one helper busy, one waiting
    assert helpers_for(1600, 128, 100) == MAX_HELPERS  # on 16 CPUs: as many as one reader keeps busy
