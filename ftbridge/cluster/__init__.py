"""Spark on Ray: Spark's standalone master and workers hosted in Ray actors."""

from ftbridge.cluster.session import (
    ExecutorInfo,
    SparkOnRay,
    current,
    executors,
    init_spark,
    spark_session,
    stop_spark,
)

__all__ = ["ExecutorInfo", "SparkOnRay", "current", "executors", "init_spark", "spark_session", "stop_spark"]
