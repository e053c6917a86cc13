"""Guards on the package layout that would break everything if violated."""

import importlib
import platform as stdlib_platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_platform_folder_never_shadows_stdlib():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "platform.py").exists()
    assert hasattr(stdlib_platform, "python_version")


def test_import_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for mod in ("polyglot_lion", "polyglot_lion.cli", "polyglot_lion.data.prepare", "polyglot_lion.data.balance",
                "polyglot_lion.data.synth", "polyglot_lion.testing"):
        importlib.import_module(mod)
    assert list(tmp_path.iterdir()) == []
