"""Errors raised by ftbridge: the tree is in `ftbridge_common.errors`, public here."""

from ftbridge_common.errors import *  # noqa: F401,F403
from ftbridge_common.errors import __doc__ as _tree

__doc__ = _tree
