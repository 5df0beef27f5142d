"""The checkout's root on sys.path (tests.collection_path, tests.sandbox), whatever directory pytest runs from."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
