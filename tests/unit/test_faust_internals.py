"""Private attributes of Faust (or of anything not the object itself) are used in
streams/faust_internals.py only, each with its reason and the version it was checked against."""

import ast
import inspect
from pathlib import Path

import faust

from streams import faust_internals

ROOT = Path(__file__).resolve().parents[2]
INTERNALS = ROOT / "streams" / "faust_internals.py"
PUBLIC_DESPITE_THE_UNDERSCORE = {
    ("os", "_exit"),
    ("KafkaError", "_ALL_BROKERS_DOWN"),  # librdkafka's own (local) error codes start with _
    ("KafkaError", "_PARTITION_EOF"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)


def private_uses(path: Path) -> list[str]:
    """`x._name` and `getattr(x, "_name")` where `x` is not `self` or `cls`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute):
            owner, name = node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            owner, name = node.args[0], node.args[1].value
        else:
            continue
        if (_private(name) and _owner(owner) not in ("self", "cls")
                and (_owner(owner), name) not in PUBLIC_DESPITE_THE_UNDERSCORE):
            found.append(f"{path.name}:{node.lineno} {_owner(owner)}.{name}")
    return found


def test_no_private_attribute_of_another_object_is_used_outside_faust_internals():
    shell = sorted(p for p in (ROOT / "streams").rglob("*.py") if p != INTERNALS)
    assert len(shell) > 10
    assert [use for path in shell for use in private_uses(path)] == []


def test_the_check_catches_a_private_attribute_read_written_or_fetched_by_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("app.consumer._add_gap = f\nself._stream._set_current_event(e)\n"
                   "getattr(table.data, '_dbs_for_actives', None)\nself._ok\nos._exit(1)\n")
    assert sorted(use.split(" ")[1] for use in private_uses(bad)) == [
        "app.consumer._add_gap", "self._stream._set_current_event", "table.data._dbs_for_actives"]


def test_each_internal_is_a_function_with_its_reason_checked_against_the_pinned_faust():
    pinned = "faust-streaming[rocksdict,prometheus]==" + faust.__version__
    assert pinned in (ROOT / "pyproject.toml").read_text()
    assert f"faust-streaming {faust.__version__}" in faust_internals.__doc__
    functions = [value for name, value in vars(faust_internals).items()
                 if inspect.isfunction(value) and value.__module__ == faust_internals.__name__]
    assert len(private_uses(INTERNALS)) == 4
    assert all(len(function.__doc__ or "") > 40 for function in functions)
