"""Errors raised by ftbridge: the tree is drawn in `ftbridge.common.errors`, public here."""

from ftbridge.common.errors import *  # noqa: F403
