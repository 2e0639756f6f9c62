"""A session's Spark secret: given or made, kept out of the settings' repr; settings that turn
authentication off are refused (the secret's way through a real session: tests/integration/test_security.py)."""

from __future__ import annotations

import pytest

from ftbridge.cluster.auth import SECRET_CONF
from ftbridge.cluster.config import ClusterConfig
from ftbridge.errors import ConfigurationError


@pytest.mark.parametrize("configs", [{"spark.authenticate": "false"}, {SECRET_CONF: " "}])
def test_settings_that_turn_authentication_off_are_refused(configs):
    with pytest.raises(ConfigurationError, match="spark.authenticate"):
        ClusterConfig("x", 1, 1, "512MB", configs)


def test_a_given_secret_is_the_sessions_and_no_repr_shows_it():
    cfg = ClusterConfig("x", 1, 1, "512MB", {SECRET_CONF: "s3cr3t-given", "spark.network.crypto.enabled": "true"})
    assert cfg.auth_secret == "s3cr3t-given" and SECRET_CONF not in cfg.configs
    assert "s3cr3t-given" not in repr(cfg) and cfg.encrypt is True
    assert len(ClusterConfig("x", 1, 1, "512MB").auth_secret) == 64
    assert ClusterConfig("x", 1, 1, "512MB").auth_secret != ClusterConfig("x", 1, 1, "512MB").auth_secret
