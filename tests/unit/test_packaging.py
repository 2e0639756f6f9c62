"""What `pip install ftbridge` puts into site-packages: one top-level package, `ftbridge`.

PyPI has other projects called `lineage` and `chaos`; the repository's lineage/ and chaos/
folders install as `ftbridge.lineage` and `ftbridge.chaos` (pyproject's package-dir), and
the base layer lives in ftbridge/common/.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile

import pytest

from tests.conftest import python_env
from tests.unit.test_layout import FOLDERS  # each repository folder and the name it installs under

ROOT = pathlib.Path(__file__).resolve().parents[2]

CHECK = """
import importlib.metadata, importlib.util, json, pathlib
site = pathlib.Path(importlib.util.find_spec("ftbridge").origin).parents[1]
# What pip installed for ftbridge (its RECORD), by top-level name; bin/ftbridge is the script.
out = {"top": sorted({f.parts[0] for f in importlib.metadata.files("ftbridge")
                      if not f.parts[0].endswith(".dist-info") and f.parts[0] != ".."}),
       "script": any(f.parts[:1] == ("..",) and f.name == "ftbridge" for f in importlib.metadata.files("ftbridge")),
       "missing": [name for name in ("lineage", "chaos", "ftbridge_common") if importlib.util.find_spec(name) is None],
       "typed": (site / "ftbridge" / "py.typed").is_file(),
       "jars": sorted(p.name for p in (site / "ftbridge" / "cluster" / "jars").glob("*.java"))}
from ftbridge.common import config
from ftbridge.errors import FtbridgeError
out["settings"] = len(config.markdown_table().splitlines())
print(json.dumps(out))
"""


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_folder_with_an_init():
    """pyproject lists its packages by hand (package-dir maps folders to names): a new folder
    that is not listed would be left out of the wheel."""
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {installed: folder for folder, installed in FOLDERS.items()}
    found = set()
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((installed, *parts)))
    assert sorted(tool["packages"]) == sorted(found)


@pytest.mark.timeout(300)
def test_the_wheel_installs_one_top_level_package(tmp_path):
    """Built from a copy of the sources (the build leaves nothing in the checkout) and installed
    without its dependencies into a fresh venv: exactly `ftbridge` in site-packages and in
    top_level.txt, no `lineage`, `chaos` or `ftbridge_common`, and py.typed and the writer's
    Java source shipped."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", *FOLDERS):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    env = python_env()
    env.pop("PYTHONPATH", None)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                            "-w", str(tmp_path / "dist"), str(src)], env=env, capture_output=True, text=True,
                           timeout=240)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("ftbridge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top_level = next(n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top_level).decode().split() == ["ftbridge"]
        assert {n.split("/")[0] for n in zf.namelist() if not n.split("/")[0].endswith(".dist-info")} == {"ftbridge"}
        assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
                   for n in zf.namelist()), "the wheel ships no LICENSE"

    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                                str(wheel)], env=env, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # Run from the venv's own folder, so the checkout is not on sys.path.
    checked = subprocess.run([python, "-c", CHECK], env=env, cwd=target, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr[-3000:]
    out = json.loads(checked.stdout)
    assert out["top"] == ["ftbridge"], out
    assert out["missing"] == ["lineage", "chaos", "ftbridge_common"], out
    assert out["typed"] and out["jars"] and out["script"], out
    assert out["settings"] > 3, out
