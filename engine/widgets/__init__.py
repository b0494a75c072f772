"""Jupyter views of a policy: Explorer (one order), BatchView (a batch of orders), WhatIf (a policy change),
TestView (test cases)."""

from .batch import BatchView
from .explorer import NOT_GIVEN_OPTION, Explorer
from .testview import TestView
from .whatif import WhatIf, variants

__all__ = ["BatchView", "Explorer", "NOT_GIVEN_OPTION", "TestView", "WhatIf", "variants"]
