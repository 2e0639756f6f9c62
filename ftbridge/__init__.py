"""ftbridge: a fault-tolerance-first bridge between Apache Spark and Ray."""

from ftbridge.cluster import ExecutorInfo, executors, init_spark, spark_session, stop_spark
from ftbridge.errors import *  # noqa: F401,F403

__version__ = "0.1.0"

__all__ = ["ExecutorInfo", "executors", "init_spark", "spark_session", "stop_spark", "__version__"]
