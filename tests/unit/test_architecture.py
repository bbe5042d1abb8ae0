import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted(p for pkg in ("processors", "readmodels", "schemas")
              for p in (ROOT / pkg).rglob("*.py"))
RULES = sorted((ROOT / "processors").rglob("*.py"))
FORBIDDEN_MODULES = {"faust", "mode", "aiokafka", "confluent_kafka", "kafka", "redis",
                     "prometheus_client", "os", "time", "streams", "personify"}
RULES_FORBIDDEN_MODULES = FORBIDDEN_MODULES | {"readmodels"}
"""The worker's rules never depend on what readers derive from their outputs."""
FORBIDDEN_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"),
                   ("date", "today"), ("uuid", "uuid4"), ("uuid", "uuid1")}
GLOBAL_RANDOM = {"random", "randint", "choice", "choices", "shuffle", "uniform", "gauss", "sample",
                 "seed", "randrange", "expovariate", "lognormvariate", "paretovariate"}


def _violations(path: Path, forbidden: set[str] = FORBIDDEN_MODULES) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "random":
                found += [f"random.{a.name}" for a in node.names if a.name in GLOBAL_RANDOM]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in FORBIDDEN_CALLS:
                found.append(f"{node.value.id}.{node.attr}")
            if node.value.id == "random" and node.attr in GLOBAL_RANDOM:
                found.append(f"random.{node.attr}")
            continue
        else:
            continue
        found += [n for n in names if n.split(".")[0] in forbidden]
    return found


def test_the_core_has_modules_to_check():
    assert len(CORE) >= 3


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_broker_store_metrics_environment_clock_or_global_random(path):
    assert _violations(path) == []


def test_the_check_catches_a_broker_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import faust\nfrom redis import Redis\nimport random\nrandom.random()\n"
                   "from datetime import datetime\ndatetime.now()\n")
    assert _violations(bad) == ["faust", "redis", "random.random", "datetime.now"]


@pytest.mark.parametrize("path", RULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rules_import_no_read_models(path):
    assert _violations(path, RULES_FORBIDDEN_MODULES) == []


def test_the_check_catches_a_read_model_import_in_the_rules(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import readmodels.report\nfrom readmodels import ledger\n")
    assert _violations(bad) == []
    assert _violations(bad, RULES_FORBIDDEN_MODULES) == ["readmodels.report", "readmodels"]


SHELL = sorted((ROOT / "streams").rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages `path` imports, wherever in the module (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", SHELL, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_worker_shell_never_imports_the_tools(path):
    """The worker runs on streams/, processors/ and schemas/ alone; the command line, the
    stack manager and the simulator (personify/) are built on top of it, never under it."""
    assert "personify" not in _imported_packages(path)
