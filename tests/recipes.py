"""Recipes used by the tests: rebuild a DataFrame from scratch in a fresh Spark session."""


def numbers(spark):
    return spark.range(0, 30_000, numPartitions=4).selectExpr(
        "id", "id * 11 % 97 as a", "concat('n', cast(id as string)) as s")


def numbers_changed(spark):
    """The same shape with different content: a recipe that no longer matches."""
    return spark.range(0, 30_000, numPartitions=4).selectExpr(
        "id", "id * 13 % 97 as a", "concat('n', cast(id as string)) as s")
