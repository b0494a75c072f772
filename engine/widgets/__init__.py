"""Jupyter views of a policy: Explorer (one order), BatchView (a batch of orders), WhatIf (a policy change),
TestView (test cases), PolicyEditor (author the rules), ResultsGrid (a frame of orders as a grid; reusable)."""

from .batch import BatchView
from .editor import PolicyEditor
from .explorer import NOT_GIVEN_OPTION, Explorer
from .grid import ResultsGrid
from .testview import TestView
from .whatif import WhatIf, variants

__all__ = [
    "BatchView", "Explorer", "NOT_GIVEN_OPTION", "PolicyEditor", "ResultsGrid", "TestView", "WhatIf", "variants",
]
