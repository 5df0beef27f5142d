"""Make `ansible_collections.lxcri.cloud` importable from this checkout without installing it."""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_tree = os.path.join(tempfile.gettempdir(), f"lxcri-unit-{os.getuid()}")
_link = os.path.join(_tree, "ansible_collections", "lxcri", "cloud")
if not os.path.islink(_link):
    os.makedirs(os.path.dirname(_link), exist_ok=True)
    os.symlink(ROOT, _link)
if os.path.realpath(_link) != os.path.realpath(ROOT):
    os.unlink(_link)
    os.symlink(ROOT, _link)
sys.path.insert(0, _tree)
