"""Make `ansible_collections.lxcri.cloud` importable from this checkout without installing it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.collection_path import importable  # noqa: E402

importable()
