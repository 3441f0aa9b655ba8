import os

# Tests never reach a model hub: everything they load is made by the tests or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
