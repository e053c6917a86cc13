"""Readers for corpora as users download them. Each lists *source items* without touching audio.

A source item is a dict with the columns of SOURCE_SCHEMA: a stable ``key`` (unique within dataset/split),
the audio as an ``audio_path``, ``audio_bytes`` or an ``archive`` + ``member`` read in place, optionally only a
span ``[start_s, end_s)`` of it (a segment of a longer recording), the ``raw_text`` as found, an optional
``speaker``, the ``source`` it came from (file and line) and, for corpus recipes, its ``split``. Problems found while listing (a malformed line, a piped wav.scp
entry) come back as reject dicts ``{"source", "reason", "detail"}``, never as exceptions.

The ``parquet`` format is the exception to driver-side listing: its rows carry audio bytes, so it is read
by Ray Data itself (see ``parquet_rows_to_items``) and never pulled through the driver.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from .text import strip_qwen_prefix

FORMATS = ("jsonl", "csv", "kaldi", "librispeech", "parquet", "lhotse")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")

SOURCE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("audio_path", pa.string()),
        ("audio_bytes", pa.binary()),
        ("raw_text", pa.string()),
        ("speaker", pa.string()),
        ("source", pa.string()),
        ("archive", pa.string()),  # an archive read in place (data/archives.py) ...
        ("member", pa.string()),  # ... and the member in it; null: matched by file stem == key while scanning
        ("start_s", pa.float64()),  # a segment of the recording (null: the whole recording)
        ("end_s", pa.float64()),
        ("split", pa.string()),  # recipes: the item's split (null: from the member's folder, see prepare)
    ]
)


@dataclass(frozen=True)
class FormatOptions:
    """Format-specific knobs; defaults follow the usual layout of each corpus family."""

    audio_column: str | None = None  # jsonl: audio|audio_filepath; csv: path; parquet: audio
    text_column: str | None = None  # jsonl/parquet: text; csv: sentence
    speaker_column: str | None = None  # csv: client_id; jsonl/parquet: speaker
    id_column: str | None = None  # jsonl/parquet: id
    clips_dir: str | None = None  # csv: folder holding the clips (default: <manifest dir>/clips, else manifest dir)
    delimiter: str | None = None  # csv: default tab for .tsv, comma otherwise
    extra: dict = field(default_factory=dict)


def _reject(source: str, reason: str, detail: str = "") -> dict:
    return {"source": source, "reason": reason, "detail": detail}


def _item(key: str, raw_text: str, source: str, audio_path: str | None = None,
          audio_bytes: bytes | None = None, speaker: str | None = None, *, archive: str | None = None,
          member: str | None = None, start_s: float | None = None, end_s: float | None = None,
          split: str | None = None) -> dict:
    return {"key": key, "audio_path": audio_path, "audio_bytes": audio_bytes, "raw_text": raw_text,
            "speaker": speaker, "source": source, "archive": archive, "member": member, "start_s": start_s,
            "end_s": end_s, "split": split}


def _key_from_path(path: str) -> str:
    return os.path.splitext(path.replace(os.sep, "/"))[0].lstrip("./") or path


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def list_jsonl(path: str, opts: FormatOptions = FormatOptions()) -> tuple[list[dict], list[dict]]:
    """One JSON object per line: ``audio``/``audio_filepath`` (relative to the manifest's folder) and ``text``."""
    base = os.path.dirname(os.path.abspath(path))
    items, rejects = [], []
    text_col = opts.text_column or "text"
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            src = f"{path}:{lineno}"
            if not raw.strip():
                continue
            line = raw.decode("utf-8", errors="surrogateescape")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                rejects.append(_reject(src, "malformed_manifest", f"invalid JSON: {e.msg}"))
                continue
            if not isinstance(obj, dict):
                rejects.append(_reject(src, "malformed_manifest", "line is not a JSON object"))
                continue
            audio = obj.get(opts.audio_column) if opts.audio_column else obj.get("audio", obj.get("audio_filepath"))
            text = obj.get(text_col)
            if not isinstance(audio, str) or not audio:
                rejects.append(_reject(src, "malformed_manifest", "no 'audio' or 'audio_filepath' string"))
                continue
            if not isinstance(text, str):
                rejects.append(_reject(src, "malformed_manifest", f"no '{text_col}' string"))
                continue
            if _has_surrogates(text):
                rejects.append(_reject(src, "undecodable_text", "transcript is not valid UTF-8"))
                continue
            key = obj.get(opts.id_column or "id")
            key = str(key) if key not in (None, "") else _key_from_path(audio)
            speaker = obj.get(opts.speaker_column or "speaker")
            audio_path = audio if os.path.isabs(audio) else os.path.join(base, audio)
            items.append(_item(key, strip_qwen_prefix(text), src, audio_path=audio_path,
                               speaker=None if speaker is None else str(speaker)))
    return items, rejects


def list_csv(path: str, opts: FormatOptions = FormatOptions()) -> tuple[list[dict], list[dict]]:
    """Common Voice style TSV/CSV: ``path`` and ``sentence`` columns, clips in ``clips/`` beside the file."""
    base = os.path.dirname(os.path.abspath(path))
    clips = opts.clips_dir or (os.path.join(base, "clips") if os.path.isdir(os.path.join(base, "clips")) else base)
    delimiter = opts.delimiter or ("\t" if path.endswith(".tsv") else ",")
    audio_col, text_col = opts.audio_column or "path", opts.text_column or "sentence"
    speaker_col = opts.speaker_column or "client_id"
    items, rejects = [], []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.DictReader(f, delimiter=delimiter,
                                quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        missing = [c for c in (audio_col, text_col) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: column(s) {missing} not found; the header has {reader.fieldnames}. "
                f"Name the columns with --audio-column / --text-column."
            )
        for lineno, row in enumerate(reader, 2):
            src = f"{path}:{lineno}"
            audio, text = row.get(audio_col), row.get(text_col)
            if not audio or text is None or None in row:
                rejects.append(_reject(src, "malformed_manifest", "wrong number of fields or empty audio path"))
                continue
            if _has_surrogates(text):
                rejects.append(_reject(src, "undecodable_text", "transcript is not valid UTF-8"))
                continue
            audio_path = audio if os.path.isabs(audio) else os.path.join(clips, audio)
            items.append(_item(_key_from_path(audio), text, src, audio_path=audio_path,
                               speaker=row.get(speaker_col) or None))
    return items, rejects


def _read_kaldi_table(path: str, rejects: list[dict]) -> dict[str, tuple[str, str]]:
    """``uttid value`` per line -> {uttid: (value, source)}; undecodable lines become rejects."""
    table: dict[str, tuple[str, str]] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            src = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                rejects.append(_reject(src, "undecodable_text", "line is not valid UTF-8"))
                continue
            if not line:
                continue
            parts = line.split(maxsplit=1)
            table[parts[0]] = (parts[1] if len(parts) > 1 else "", src)
    return table


def list_kaldi(path: str, opts: FormatOptions = FormatOptions()) -> tuple[list[dict], list[dict]]:
    """A Kaldi data dir (AISHELL / OpenSLR): ``wav.scp`` + ``text`` (+ optional ``utt2spk``)."""
    for name in ("wav.scp", "text"):
        if not os.path.isfile(os.path.join(path, name)):
            raise ValueError(f"{path}: a kaldi data dir needs '{name}' (not found)")
    rejects: list[dict] = []
    wavs = _read_kaldi_table(os.path.join(path, "wav.scp"), rejects)
    texts = _read_kaldi_table(os.path.join(path, "text"), rejects)
    spk_path = os.path.join(path, "utt2spk")
    spks = _read_kaldi_table(spk_path, []) if os.path.isfile(spk_path) else {}
    items = []
    for utt, (wav, src) in sorted(wavs.items()):
        if wav.endswith("|"):
            rejects.append(_reject(src, "unsupported_entry", "piped wav.scp command; extract the audio to files first"))
            continue
        if utt not in texts:
            rejects.append(_reject(src, "malformed_manifest", f"utterance {utt} has no line in 'text'"))
            continue
        audio_path = wav if os.path.isabs(wav) or os.path.exists(wav) else os.path.join(path, wav)
        items.append(_item(utt, texts[utt][0], src, audio_path=audio_path,
                           speaker=spks.get(utt, (None,))[0]))
    for utt, (_, src) in sorted(texts.items()):
        if utt not in wavs:
            rejects.append(_reject(src, "missing_audio", f"utterance {utt} has no entry in wav.scp"))
    return items, rejects


def list_librispeech(path: str, opts: FormatOptions = FormatOptions()) -> tuple[list[dict], list[dict]]:
    """The LibriSpeech tree: ``speaker/chapter/speaker-chapter.trans.txt`` with ``UTTID.flac`` beside it."""
    items, rejects = [], []
    trans_files = sorted(Path(path).rglob("*.trans.txt"))
    if not trans_files:
        raise ValueError(f"{path}: no '*.trans.txt' files found; is this a LibriSpeech split folder?")
    for trans in trans_files:
        for utt, (text, src) in _read_kaldi_table(str(trans), rejects).items():
            audio = trans.parent / f"{utt}.flac"
            items.append(_item(utt, text, src, audio_path=str(audio), speaker=utt.split("-")[0]))
    return items, rejects


def parquet_rows_to_items(table: pa.Table, opts: FormatOptions, base_dir: str) -> pa.Table:
    """Hugging Face datasets Parquet rows (audio struct ``{bytes, path}`` + text) -> source items.

    Rows whose audio or text cannot be used keep ``raw_text``/``audio`` as found; the processing stage
    rejects them with a reason. The key is the id column, else the audio path's stem, else a hash of the bytes.
    """
    audio_col, text_col = opts.audio_column or "audio", opts.text_column or "text"
    for col in (audio_col, text_col):
        if col not in table.column_names:
            raise ValueError(f"parquet input: column {col!r} not found; columns are {table.column_names}. "
                             f"Name them with --audio-column / --text-column.")
    rows = table.to_pylist()
    out = []
    for i, row in enumerate(rows):
        audio, text = row.get(audio_col), row.get(text_col)
        origin = row.get("path") or "parquet"
        data = path = None
        if isinstance(audio, dict):
            data, path = audio.get("bytes"), audio.get("path")
        elif isinstance(audio, (bytes, str)):
            data, path = (audio, None) if isinstance(audio, bytes) else (None, audio)
        key = row.get(opts.id_column or "id")
        if key in (None, ""):
            key = _key_from_path(os.path.basename(path)) if path else (
                hashlib.sha1(data).hexdigest()[:16] if data else f"row-{i}")
        audio_path = None
        if not data and path:
            audio_path = path if os.path.isabs(path) else os.path.join(base_dir, path)
        source = f"{origin}#{path or key}"
        out.append(_item(str(key), text if isinstance(text, str) else "", source, audio_path=audio_path,
                         audio_bytes=data or None,
                         speaker=None if row.get(opts.speaker_column or "speaker") is None
                         else str(row.get(opts.speaker_column or "speaker"))))
    return pa.Table.from_pylist(out, schema=SOURCE_SCHEMA)


def _read_jsonl_any(path: str) -> list[tuple[int, object]]:
    """(line number, parsed JSON or the JSONDecodeError) for each non-empty line of a .jsonl or .jsonl.gz."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    out.append((n, e))
    return out


def _lhotse_files(path: str) -> tuple[str | None, str | None, str | None]:
    """(cuts, recordings, supervisions) manifest paths for a --format lhotse input: a CutSet file, a
    SupervisionSet file (its RecordingSet beside it, 'supervisions' -> 'recordings' in the name), or a folder
    holding exactly one of either."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith((".jsonl", ".jsonl.gz")))
        cuts = [n for n in names if "cuts" in n]
        sups = [n for n in names if "supervisions" in n]
        if len(cuts) + len(sups) != 1:
            raise ValueError(f"{path}: a lhotse folder needs exactly one cuts or supervisions manifest "
                             f"(.jsonl/.jsonl.gz); found {cuts + sups or 'none'}; give the manifest file instead")
        path = os.path.join(path, (cuts + sups)[0])
    name = os.path.basename(path)
    if not name.endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"{path}: lhotse manifests must be .jsonl or .jsonl.gz")
    if "supervisions" in name:
        recordings = os.path.join(os.path.dirname(path), name.replace("supervisions", "recordings"))
        if not os.path.isfile(recordings):
            raise ValueError(f"{path}: its recordings manifest {recordings} does not exist")
        return None, recordings, path
    return path, None, None


def _lhotse_audio(rec: dict, base: str) -> tuple[str | None, str | None]:
    """A recording's audio file, or (None, why not)."""
    sources = rec.get("sources") or []
    if len(sources) != 1:
        return None, f"{len(sources)} audio sources (one file per recording is supported)"
    src = sources[0]
    if src.get("type") != "file":
        return None, f"audio source of type {src.get('type')!r} (only 'file' is supported)"
    p = src.get("source")
    if not isinstance(p, str) or not p:
        return None, "audio source without a path"
    return (p if os.path.isabs(p) or os.path.exists(p) else os.path.join(base, p)), None


def list_lhotse(path: str, opts: FormatOptions = FormatOptions()) -> tuple[list[dict], list[dict]]:
    """lhotse manifests (a RecordingSet + SupervisionSet pair, or a CutSet; .jsonl or .jsonl.gz): one item per
    supervision, a segment of its recording unless it covers all of it. Keys are the supervision ids."""
    cuts, recordings, supervisions = _lhotse_files(path)
    items, rejects = [], []
    pairs: list[tuple[str, dict, dict, float]] = []  # (source, supervision, recording, offset of the cut)
    if cuts:
        base = os.path.dirname(os.path.abspath(cuts))
        for n, cut in _read_jsonl_any(cuts):
            src = f"{cuts}:{n}"
            if not isinstance(cut, dict) or not isinstance(cut.get("recording"), dict):
                rejects.append(_reject(src, "malformed_manifest", "not a cut with a recording"))
                continue
            for sup in cut.get("supervisions") or []:
                pairs.append((src, sup, cut["recording"], float(cut.get("start", 0.0))))
    else:
        base = os.path.dirname(os.path.abspath(recordings))
        recs: dict[str, dict] = {}
        for n, rec in _read_jsonl_any(recordings):
            if isinstance(rec, dict) and "id" in rec:
                recs[rec["id"]] = rec
            else:
                rejects.append(_reject(f"{recordings}:{n}", "malformed_manifest", "not a recording"))
        for n, sup in _read_jsonl_any(supervisions):
            src = f"{supervisions}:{n}"
            if not isinstance(sup, dict) or sup.get("recording_id") not in recs:
                rejects.append(_reject(src, "malformed_manifest" if not isinstance(sup, dict) else "missing_audio",
                                       "no recording with this supervision's recording_id"))
                continue
            pairs.append((src, sup, recs[sup["recording_id"]], 0.0))
    for src, sup, rec, offset in pairs:
        text = sup.get("text")
        if not isinstance(text, str) or "id" not in sup:
            rejects.append(_reject(src, "malformed_manifest", "supervision without id or text"))
            continue
        if _has_surrogates(text):
            rejects.append(_reject(src, "undecodable_text", "transcript is not valid UTF-8"))
            continue
        audio, why = _lhotse_audio(rec, base)
        if audio is None:
            rejects.append(_reject(src, "unsupported_entry", why))
            continue
        start = offset + float(sup.get("start", 0.0))
        end = start + float(sup.get("duration", 0.0))
        whole = abs(start) < 1e-6 and abs(end - float(rec.get("duration", -1))) < 1e-3
        items.append(_item(str(sup["id"]), text, src, audio_path=audio, speaker=sup.get("speaker"),
                           start_s=None if whole else start, end_s=None if whole else end))
    return items, rejects


LISTERS = {"jsonl": list_jsonl, "csv": list_csv, "kaldi": list_kaldi, "librispeech": list_librispeech,
           "lhotse": list_lhotse}
