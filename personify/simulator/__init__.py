"""The simulator: a realistic population of visitors and customers, with ground truth.

`generate(config, rng)` is the library entry point (tests); `add_arguments` / `run` mount it
as `personify simulate`. docs/simulator.md describes the model, the knobs and the truth file.
"""

from personify.simulator.command import add_arguments, run
from personify.simulator.population import PersonTruth, SimEvent, SimulationConfig
from personify.simulator.stream import Totals, generate

__all__ = [
    "PersonTruth",
    "SimEvent",
    "SimulationConfig",
    "Totals",
    "add_arguments",
    "generate",
    "run",
]
