"""Every ``>>>`` example in minioptim's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import minioptim

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(minioptim.__path__, prefix="minioptim.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, extraglobs={"torch": torch, "minioptim": minioptim}):
        if test.examples and test.name.startswith(name):  # not re-exported objects
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
