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


def test_column_order_is_free_but_names_and_types_count():
    ref = pa.table({"id": [1, 2], "v": ["a", "b"], "w": [1.5, 2.5]})
    assert check(ref, ref.select(["w", "id", "v"])).ok
    renamed = check(ref, ref.rename_columns(["id", "v", "x"]))
    assert renamed.changed == [1, 2] and not renamed.ok
    retyped = check(ref, ref.set_column(2, "w", pa.array([1, 2])))  # 1.5 -> 1: the value changed
    assert retyped.changed == [1, 2]
    same_value_other_type = check(pa.table({"id": [1], "w": [2.0]}), pa.table({"id": [1], "w": [2]}))
    assert same_value_other_type.changed == [1]  # 2.0 and 2 are different content


def test_a_string_that_is_not_utf8_counts_as_changed():
    # What a byte flipped in a spill file's string data looks like to the consumer.
    ref = table([1, 2, 3], ["ab", "cd", "ef"])
    offsets = pa.array([0, 2, 4, 6], pa.int32()).buffers()[1]
    bad = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"ab\xcd\xffef")])
    result = check(ref, pa.table({"id": [1, 2, 3], "v": bad}))
    assert result.changed == [2] and not result.lost and not result.ok
