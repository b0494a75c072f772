"""Jupyter views of a policy: Explorer (one order), BatchView (a batch of orders), WhatIf (a policy change),
PolicyEditor (author the rules)."""

from .batch import BatchView
from .editor import PolicyEditor
from .explorer import NOT_GIVEN_OPTION, Explorer
from .whatif import WhatIf, variants

__all__ = ["BatchView", "Explorer", "NOT_GIVEN_OPTION", "PolicyEditor", "WhatIf", "variants"]
