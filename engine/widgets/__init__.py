"""Jupyter views of a policy: Explorer (one order), BatchView (a batch of orders), WhatIf (a policy change),
TestView (test cases), and ResultsGrid (a frame of orders as a grid; reusable)."""

from .batch import BatchView
from .explorer import NOT_GIVEN_OPTION, Explorer
from .grid import ResultsGrid
from .testview import TestView
from .whatif import WhatIf, variants

__all__ = ["BatchView", "Explorer", "NOT_GIVEN_OPTION", "ResultsGrid", "TestView", "WhatIf", "variants"]
