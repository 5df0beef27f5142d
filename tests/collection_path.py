"""Make `ansible_collections.lxcri.cloud` importable from this checkout without installing it: a symlink
ansible_collections/lxcri/cloud -> the checkout, in a directory of its own that goes first on sys.path."""
import hashlib
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def importable(root=ROOT):
    # One tree per checkout, so that two checkouts (a copy a test made, a CI clone) never re-point each other's link.
    digest = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:8]
    tree = os.path.join(tempfile.gettempdir(), f"lxcri-{os.getuid()}-{digest}")
    link = os.path.join(tree, "ansible_collections", "lxcri", "cloud")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(root, link)
        except FileExistsError:  # made meanwhile by a parallel run
            pass
    if os.path.realpath(link) != os.path.realpath(root):
        os.unlink(link)
        os.symlink(root, link)
    if tree not in sys.path:
        sys.path.insert(0, tree)
    return tree
