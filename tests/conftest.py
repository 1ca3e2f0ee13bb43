"""Test-wide isolation: the evaluation baseline cache lives in a per-session temporary directory,
so tests neither read a developer's cache nor leave entries behind."""
import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_eval_cache():
    with tempfile.TemporaryDirectory(prefix="lo-eval-cache-") as d:
        old = os.environ.get("LEARNED_OPT_EVAL_CACHE")
        os.environ["LEARNED_OPT_EVAL_CACHE"] = d
        yield
        if old is None:
            os.environ.pop("LEARNED_OPT_EVAL_CACHE", None)
        else:
            os.environ["LEARNED_OPT_EVAL_CACHE"] = old
