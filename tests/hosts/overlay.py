"""Install what `ray[default]` adds to Ray (its dashboard and Jobs API: ftbridge's `jobs` extra)
into a folder of its own, for the Ray Jobs test (tests/hosts/test_jobs.py) only.

With those packages importable, every Ray node also starts a dashboard agent (about 1.2 s more
per `ray.init()` and a process per node), which the rest of the suite does not need. So the
test venv stays plain `ray[data,train]`, and the host-level cluster of the Jobs test puts this
folder on its PYTHONPATH: its Ray is then exactly what `pip install ftbridge[jobs]` gives.

    python tests/hosts/overlay.py DIR [pip args...]   (./dev test runs it with -c constraints.txt)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement


def default_extra() -> list[str]:
    """The installed Ray's `default` extra, as requirement strings (markers evaluated here)."""
    out = []
    for text in requires("ray") or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": "default"}) and \
                not req.marker.evaluate({"extra": ""}):
            out.append(f"{req.name}{req.specifier}")
    return out


def stamp() -> str:
    return f"ray {version('ray')}: " + " ".join(sorted(default_extra()))


def install(target: str, pip_args: list[str]) -> None:
    marker = os.path.join(target, ".ray-default")
    if os.path.exists(marker) and open(marker).read() == stamp():
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--upgrade", "--target", target, *pip_args, *default_extra()], check=True)
    _drop_installed(target)
    with open(marker, "w") as f:
        f.write(stamp())


def _drop_installed(target: str) -> None:
    """Remove from `target` every distribution the venv has already: the folder goes first on
    PYTHONPATH, so it must add packages, never shadow the venv's own versions."""
    from importlib.metadata import PackageNotFoundError, distributions

    for dist in distributions(path=[os.path.abspath(target)]):
        try:
            version(dist.metadata["Name"])  # looked up in the venv: target is not on sys.path here
        except PackageNotFoundError:
            continue
        for f in dist.files or []:
            path = os.path.join(target, str(f))
            if os.path.isfile(path):
                os.remove(path)
    for base, _, _ in os.walk(target, topdown=False):  # children first: a folder emptied above goes too
        if base != target:
            with contextlib.suppress(OSError):
                os.rmdir(base)


def ready(target: str) -> str | None:
    """None if `target` holds the installed Ray's `default` extra, else what to run."""
    marker = os.path.join(target, ".ray-default")
    if os.path.exists(marker) and open(marker).read() == stamp():
        return None
    return f"ray[default]'s packages are not installed in {target}: run `python tests/hosts/overlay.py {target}`"


if __name__ == "__main__":
    install(sys.argv[1], sys.argv[2:])
