import json
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.contract import SCHEMA_DIR

EXAMPLES = sorted((SCHEMA_DIR / "examples").glob("*.json"))
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _schema_of(example: Path) -> Path:
    kind, version = example.name.split(".")[:2]
    return SCHEMA_DIR / f"{kind}.{version}.schema.json"


def _check(schema: Path, *instances: Path, cwd: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with every network fetch refused: `$ref`s must resolve from the folder."""
    unreachable = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                   "no_proxy": "", "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(CHECK_JSONSCHEMA), "--no-cache", "--schemafile", str(schema),
                           *map(str, instances)], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=unreachable)


@pytest.mark.parametrize("schema", sorted({_schema_of(e) for e in EXAMPLES}),
                         ids=lambda p: p.name)
def test_check_jsonschema_accepts_every_golden_example_offline_from_any_folder(schema, tmp_path):
    examples = [e for e in EXAMPLES if _schema_of(e) == schema]
    result = _check(schema, *examples, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_refuses_an_example_that_breaks_a_shared_definition(tmp_path):
    broken = json.loads((SCHEMA_DIR / "examples/credit.v2.payment_assert.json").read_text())
    broken["currency"] = "euro"  # `currency` is defined in common.v1.schema.json
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = _check(SCHEMA_DIR / "credit.v2.schema.json", path, cwd=tmp_path)
    assert result.returncode == 1 and "currency" in result.stdout, result.stdout + result.stderr
