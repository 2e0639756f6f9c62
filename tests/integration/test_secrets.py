"""Credentials in a spill URI never reach the catalog, the logs or an error message.

The object store is a real S3-compatible server (moto) on loopback.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import stat
import subprocess
import sys

import pytest
import ray
from moto.server import ThreadedMotoServer

import ftbridge
from ftbridge.cluster import scratch
from ftbridge.cluster.net import free_port
from ftbridge.convert.ops.rowcheck import check, content_checksum, read_all, spark_to_arrow
from ftbridge.errors import ConfigurationError
from ftbridge.lineage.catalog import Catalog
from tests.conftest import python_env

KEY_ID, SECRET = "AKIAFTBRIDGETESTKEY", "sEcReT-must-not-be-stored"


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"127.0.0.1:{port}"
    import pyarrow.fs as pafs

    fs, _ = pafs.FileSystem.from_uri(f"s3://x:y@bucket?endpoint_override={endpoint}&scheme=http&region=us-east-1"
                                     "&allow_bucket_creation=true")
    fs.create_dir("ftbridge-secrets")
    yield endpoint
    server.stop()


def _everything_in(catalog: str) -> str:
    """Every value of every table of the catalog, as text (read as ftbridge reads it: after the
    writer's pending commit, retried while the writer holds the file)."""
    with Catalog(catalog).read() as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return "\n".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


@pytest.mark.core
def test_spill_uri_credentials_stay_out_of_catalog_logs_and_errors(spark, s3_endpoint, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    catalog = str(tmp_path / "private" / "catalog.duckdb")
    uri = (f"s3://{KEY_ID}:{SECRET}@ftbridge-secrets/spill?endpoint_override={s3_endpoint}&scheme=http"
           "&region=us-east-1")
    df = spark.range(0, 6000, numPartitions=3).selectExpr("id", "concat('v', cast(id as string)) as s")
    expected = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, spill_dir=uri, catalog=catalog, name="on-s3")
    cid = ftbridge.conversion_id(ds)
    assert check(expected, read_all(ds)).ok
    # This process reopens it with the credentials it was given (they are not in the catalog).
    reopened = check(expected, read_all(ftbridge.open_recoverable(cid, catalog=catalog)))
    assert reopened.ok, str(reopened)

    stored = _everything_in(catalog)
    assert "ftbridge-secrets/spill" in stored and s3_endpoint in stored  # the root is there, redacted
    for secret in (KEY_ID, SECRET):
        assert secret not in stored
        for path in glob.glob(catalog + "*"):
            with open(path, "rb") as f:
                assert secret.encode() not in f.read(), f"{secret} in {path}"
        assert secret not in caplog.text
        for log_file in glob.glob(os.path.join(scratch.log_dir(), "*")):
            with open(log_file, errors="replace") as f:
                assert secret not in f.read(), f"{secret} in {log_file}"
    assert stat.S_IMODE(os.stat(catalog).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(catalog)).st_mode) == 0o700

    show = subprocess.run([sys.executable, "-m", "ftbridge.cli.main", "show", cid, "--catalog", catalog, "--json"],
                          env=python_env(), capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    assert json.loads(show.stdout)["conversion"]["spill_root"].startswith("s3://ftbridge-secrets/spill?")
    assert all(s not in show.stdout + show.stderr for s in (KEY_ID, SECRET))

    with pytest.raises(ConfigurationError) as bad:  # a bucket that does not exist, same credentials
        ftbridge.from_spark_recoverable(df, spill_dir=uri.replace("ftbridge-secrets/", "no-such-bucket/"),
                                        catalog=catalog)
    assert all(s not in str(bad.value) for s in (KEY_ID, SECRET)), str(bad.value)

    # A new driver process reopens it with credentials from its environment, as operators run it.
    code = f"""
import os, ray, ftbridge
from ftbridge.convert.ops.rowcheck import read_all, content_checksum
creds = {{"AWS_ACCESS_KEY_ID": "{KEY_ID}", "AWS_SECRET_ACCESS_KEY": "{SECRET}"}}
os.environ.update(creds)
ray.init(address="{ray.get_runtime_context().gcs_address}", log_to_driver=False,
         runtime_env={{"env_vars": creds}})
print("CHECKSUM", content_checksum(read_all(ftbridge.open_recoverable("{cid}", catalog="{catalog}")), "id"))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"CHECKSUM {content_checksum(expected, 'id')}" in proc.stdout
    ftbridge.release(ds)
