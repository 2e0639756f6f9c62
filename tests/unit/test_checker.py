"""The checker must catch every way data can go wrong (it is what makes chaos tests honest)."""

import pyarrow as pa

from ftbridge.convert.ops.rowcheck import check


def table(ids, vals):
    return pa.table({"id": ids, "v": vals})


def test_identical_in_any_order_is_ok():
    ref = table([1, 2, 3], ["a", "b", "c"])
    assert check(ref, table([3, 1, 2], ["c", "a", "b"])).ok


def test_lost_duplicated_unexpected_changed_are_caught():
    ref = table([1, 2, 3], ["a", "b", "c"])
    assert check(ref, table([1, 2], ["a", "b"])).lost == [3]
    assert check(ref, table([1, 2, 3, 3], ["a", "b", "c", "c"])).duplicated == [3]
    assert check(ref, table([1, 2, 3, 4], ["a", "b", "c", "d"])).unexpected == [4]
    changed = check(ref, table([1, 2, 3], ["a", "B", "c"]))
    assert changed.changed == [2] and not changed.ok
    assert changed.checksum_expected != changed.checksum_read
