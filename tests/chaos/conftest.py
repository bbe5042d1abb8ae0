"""The chaos suite runs on the integration tier's fixtures: the live broker, fresh topics."""

from tests.integration.conftest import base_settings, settings, start_worker  # noqa: F401
