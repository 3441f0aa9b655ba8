import atexit
import os
import shutil
import tempfile

# Tests never reach a model hub: everything they load is made by the tests or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Nor the user's cache: outputs and the embedded world go to a directory removed at exit.
os.environ["INSTRACT_EVAL_CACHE"] = tempfile.mkdtemp(prefix="instract-eval-tests-")
atexit.register(shutil.rmtree, os.environ["INSTRACT_EVAL_CACHE"], ignore_errors=True)


import pytest  # noqa: E402

from instract_eval.synth import generate_world  # noqa: E402


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The tiny synthetic world (seed 0), generated once; tests that change files work on a copy."""
    out = tmp_path_factory.mktemp("synth") / "world"
    generate_world(out, seed=0, size="tiny")
    return out
