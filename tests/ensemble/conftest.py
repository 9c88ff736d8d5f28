"""Fixtures of the ensemble tests (defined in :mod:`tests.ensemble.tiny`)."""

from tests.ensemble.tiny import reference_runs, tiny_inputs  # noqa: F401 - fixtures
