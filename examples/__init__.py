"""Programs a user would copy. Each runs on its own (`python examples/NAME.py`) and the test suite
runs each one's `run(...)` on its own cluster (tests/integration: test_training, test_convert)."""
