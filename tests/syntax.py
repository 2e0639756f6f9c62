"""Syntax trees for the tests that read the source, safe beside threads that format tracebacks.

CPython 3.11 keeps the AST constructor's recursion counter per interpreter, not per thread: an
`ast.parse` that overlaps one in another thread fails with "SystemError: AST constructor recursion
depth mismatch" (python/cpython#106905 and pytest-dev/pytest#10763). 3.11's traceback module
parses each source line it underlines, so any thread that formats an exception parses too: in
the suite, Ray Data's usage poller logged a refused Prometheus query with its traceback every 10 s
(the suite now turns that poller off in conftest.py) and a layout test failed on CI. The error
says nothing about the source, so a parse that meets it is simply run again; any other error,
and the same one three times running, is raised.
"""

from __future__ import annotations

import ast
import pathlib

_ATTEMPTS = 3


def parse(source: str | pathlib.Path) -> ast.Module:
    """`ast.parse` of a source string, or of a file's text when given a path."""
    text = source.read_text() if isinstance(source, pathlib.Path) else source
    for attempt in range(_ATTEMPTS):
        try:
            return ast.parse(text)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
