"""Install what `ray[default]` adds to Ray (its dashboard and Jobs API: ftbridge's `jobs` extra)
into a folder of its own, for the Ray Jobs test (tests/hosts/test_jobs.py) only; or, with
`--extra client`, what `ray[client]` adds (grpcio: ftbridge's `ray-on-spark` extra), for the
Ray-on-Spark test (tests/hosts/test_ray_on_spark.py).

With those packages importable, every Ray node also starts a dashboard agent (about 1.2 s more
per `ray.init()` and a process per node), which the rest of the suite does not need. So the
test venv stays plain `ray[data,train]`, and the host-level cluster of the Jobs test puts this
folder on its PYTHONPATH: its Ray is then exactly what `pip install ftbridge[jobs]` gives.

    python tests/hosts/overlay.py DIR [--extra client] [pip args...]   (./dev test runs it with -c constraints.txt)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement


def default_extra(extra: str = "default") -> list[str]:
    """The installed Ray's `extra` extra, as requirement strings (markers evaluated here)."""
    out = []
    for text in requires("ray") or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": extra}) and \
                not req.marker.evaluate({"extra": ""}):
            out.append(f"{req.name}{req.specifier}")
    return out


def stamp(extra: str = "default") -> str:
    return f"ray {version('ray')}: " + " ".join(sorted(default_extra(extra)))


def install(target: str, pip_args: list[str], extra: str = "default") -> None:
    marker = os.path.join(target, f".ray-{extra}")
    if os.path.exists(marker) and open(marker).read() == stamp(extra):
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--upgrade", "--target", target, *pip_args, *default_extra(extra)], check=True)
    _drop_installed(target)
    with open(marker, "w") as f:
        f.write(stamp(extra))


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


def ready(target: str, extra: str = "default") -> str | None:
    """None if `target` holds the installed Ray's `extra` extra, else what to run."""
    marker = os.path.join(target, f".ray-{extra}")
    if os.path.exists(marker) and open(marker).read() == stamp(extra):
        return None
    return (f"ray[{extra}]'s packages are not installed in {target}: run "
            f"`python tests/hosts/overlay.py {target} --extra {extra}`")


if __name__ == "__main__":
    args = sys.argv[2:]
    chosen = "default"
    if args[:1] == ["--extra"]:
        chosen, args = args[1], args[2:]
    install(sys.argv[1], args, chosen)
