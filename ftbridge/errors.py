"""Errors raised by ftbridge: the tree is drawn in `ftbridge_common.errors`, public here."""

from ftbridge_common.errors import *  # noqa: F401,F403
