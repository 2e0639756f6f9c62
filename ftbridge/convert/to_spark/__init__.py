"""Ray -> Spark: a Dataset's blocks staged as Arrow IPC files, read by Spark's executors in order.

`conversion.py` stages every block with a Ray task (`stage.py`: the same file format and
checksum as a spill file), records the conversion, and returns a DataFrame whose partition i
is block i (`reader.py` runs in Spark's Python workers). A staged file that is missing,
corrupt or on another node is staged again from the block's Ray object by `restage.py`.
"""
