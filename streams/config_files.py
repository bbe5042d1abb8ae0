"""Read the optional pipeline config file once, at start-up."""

from __future__ import annotations

import tomllib
from pathlib import Path

from processors.config import PipelineConfig, parse_config
from streams.topology import Settings


def load_pipeline_config(settings: Settings) -> PipelineConfig:
    if not settings.config_file:
        return PipelineConfig()
    path = Path(settings.config_file)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"PERSONIFY_CONFIG_FILE={path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return parse_config(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
