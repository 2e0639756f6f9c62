"""Type-check the package as it installs: mypy does not read setuptools' package-dir, so the
repository's lineage/ and chaos/ folders are laid out under ftbridge/ (as pip installs them) in a
temp folder of symlinks, and the paths in mypy's report are turned back into the repository's.

Run: python .ci/typecheck.py [mypy args]   (./dev check runs it)
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="ftbridge-typecheck-") as tmp:
        tree = pathlib.Path(tmp) / "ftbridge"
        tree.mkdir()
        for entry in (ROOT / "ftbridge").iterdir():
            if entry.name != "__pycache__":
                (tree / entry.name).symlink_to(entry)
        back = {}
        for name, folder in package_dir.items():
            if name != "ftbridge":
                sub = name.split(".", 1)[1]
                (tree / sub).symlink_to(ROOT / folder)
                back[f"ftbridge/{sub}/"] = f"{folder}/"
        proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                               "--cache-dir", os.path.join(tmp, ".mypy_cache"), *argv],
                              cwd=tmp, capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        for installed, folder in back.items():
            if line.startswith(installed):
                line = folder + line[len(installed):]
                break
        print(line)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
