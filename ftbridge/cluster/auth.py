"""Who may talk to a session's Spark: its own driver, master, workers and executors, nobody else.

Every Spark on Ray session authenticates Spark's RPC (`spark.authenticate`) with a secret of
its own: a fresh random one, or the user's `spark.authenticate.secret`. Where it goes:

- master and worker JVMs: the environment variable Spark reads it from (`_SPARK_AUTH_SECRET`;
  a process's environment is readable only by its owner, its command line by everyone);
- executors: their worker hands it on the same way (Spark leaves the secret out of the
  executor's command line);
- the driver: its SparkConf, set through Py4J once the driver JVM runs, never on the
  spark-submit command line that starts it.

Nothing else holds it: ftbridge never logs it, writes it to the catalog or puts it in an error
message. `encrypt=True` turns on Spark's RPC encryption on top (AES, keys from the same
handshake). The master's and workers' web UIs listen on loopback only.
"""

from __future__ import annotations

import secrets

from ftbridge.common.errors import ConfigurationError

SECRET_CONF = "spark.authenticate.secret"
SECRET_ENV = "_SPARK_AUTH_SECRET"  # Spark's SecurityManager.ENV_AUTH_SECRET
UI_HOST = "127.0.0.1"


def take_secret(configs: dict[str, str]) -> str:
    """The session's secret: the user's (taken out of `configs`, so it reaches no command line)
    or a new random one. Refuses a configuration that turns authentication off."""
    if configs.get("spark.authenticate", "true").strip().lower() != "true":
        raise ConfigurationError(
            "ftbridge always authenticates Spark RPC: without it anyone who reaches a node's address "
            "could run code on the executors. Drop spark.authenticate from configs.")
    given = configs.pop(SECRET_CONF, None)
    if given is not None and not given.strip():
        raise ConfigurationError(f"{SECRET_CONF} is empty; give a secret or leave it out (ftbridge makes one)")
    return given or secrets.token_hex(32)


def spark_conf(encrypt: bool) -> dict[str, str]:
    """What every side's SparkConf says about security; none of it is secret."""
    conf = {"spark.authenticate": "true"}
    if encrypt:
        conf["spark.network.crypto.enabled"] = "true"
    return conf


def daemon_opts(encrypt: bool) -> str:
    """Java options of the master and worker JVMs (their command line: no secret)."""
    return " ".join(f"-D{k}={v}" for k, v in spark_conf(encrypt).items())


def daemon_env(secret: str) -> dict[str, str]:
    """Environment of the master and worker JVMs: the secret, and loopback for their web UIs
    (Spark binds a daemon's UI to SPARK_LOCAL_IP, else to every address; RPC binds --host)."""
    return {SECRET_ENV: secret, "SPARK_LOCAL_IP": UI_HOST}
