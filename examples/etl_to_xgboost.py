"""ETL in Spark, then XGBoost on Ray Train, recoverably: `fit_on_spark`.

The Spark DataFrames become recoverable, streaming datasets (a lost block, file or node is
rebuilt from Spark); the catalog records the run, its inputs and every report.

Run: python examples/etl_to_xgboost.py   (starts a local Ray and Spark on it; ~1 minute)
"""

from __future__ import annotations

import tempfile

import numpy as np
import ray
import ray.train
import xgboost
from ray.train import ScalingConfig
from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

import ftbridge

FEATURES = ["x1", "x2"]


def frames(spark, rows: int = 20_000):
    """The ETL: features and a label, split into train and evaluation DataFrames."""
    data = spark.range(0, rows, numPartitions=6).selectExpr(
        "id", "cast(id % 97 as double) as x1", "cast(id % 13 as double) as x2").selectExpr(
        "id", "x1", "x2", "2.0 * x1 - 3.0 * x2 as y")
    return data.where("id % 5 != 0"), data.where("id % 5 = 0")


def train_loop(config: dict) -> None:
    """Runs in each Ray Train worker: its shards of "train" and "evaluation", as pandas."""
    train = ray.train.get_dataset_shard("train").materialize().to_pandas()
    evaluation = ray.train.get_dataset_shard("evaluation").materialize().to_pandas()
    dtrain = xgboost.DMatrix(train[FEATURES], label=train["y"])
    deval = xgboost.DMatrix(evaluation[FEATURES], label=evaluation["y"])
    xgboost.train({"objective": "reg:squarederror", "max_depth": 4, "eta": 0.6, "tree_method": "hist"},
                  dtrain, num_boost_round=10, evals=[(dtrain, "train"), (deval, "evaluation")],
                  callbacks=[RayTrainReportCallback(frequency=5)])


def run(spark, *, catalog: str | None = None, storage_path: str, scaling_config: ScalingConfig,
        name: str = "xgb") -> tuple[ftbridge.FitResult, float]:
    """Train, then score the model on evaluation rows in Spark: (the fit, its RMSE there)."""
    train_df, eval_df = frames(spark)
    fit = ftbridge.fit_on_spark(XGBoostTrainer, train_df, eval_df, name=name, catalog=catalog,
                                storage_path=storage_path, train_loop_per_worker=train_loop,
                                scaling_config=scaling_config)
    booster = RayTrainReportCallback.get_model(fit.checkpoint)
    sample = eval_df.limit(500).toPandas()
    predicted = booster.predict(xgboost.DMatrix(sample[FEATURES]))
    return fit, float(np.sqrt(np.mean((predicted - sample["y"].to_numpy()) ** 2)))


def main() -> None:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    spark = ftbridge.init_spark("etl-to-xgboost", num_executors=2, executor_cores=1, executor_memory="1GB")
    try:
        with tempfile.TemporaryDirectory(prefix="ftbridge-example-") as tmp:
            fit, rmse = run(spark, catalog=f"{tmp}/catalog.duckdb", storage_path=f"{tmp}/results",
                            scaling_config=ScalingConfig(num_workers=2))
            print(f"run {fit.run_id}: evaluation RMSE {fit.metrics['evaluation-rmse']:.3f} "
                  f"(Ray Train), {rmse:.3f} on 500 rows scored back in Spark")
    finally:
        ftbridge.stop_spark()
        ray.shutdown()


if __name__ == "__main__":
    main()
