"""The scheduling data of tests/engines.py: each long test it names exists (a renamed one would silently lose
its place at the front of the queue) and its unit does not take the other long tests with it."""
import importlib
import types

import pytest

from engines import LONG_TESTS


@pytest.mark.parametrize("nodeid", sorted(LONG_TESTS))
def test_a_long_test_names_a_test_of_the_suite(nodeid):
    path, _, test = nodeid.partition("::")
    name, _, param = test.partition("[")
    module = importlib.import_module(path.removesuffix(".py"))
    assert isinstance(getattr(module, name, None), types.FunctionType), f"{nodeid}: no test {name} in {path}"
    assert param.removesuffix("]") in module.ENGINES, f"{nodeid}: {param} is not one of {module.ENGINES}"
