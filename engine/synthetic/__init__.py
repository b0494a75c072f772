"""Synthetic policies and orders for tests and benchmarks; pure: text and frames out, nothing evaluated.

- `synthetic_orders`: realistic orders as a CSV export holds them (mixed labels, timestamps, ~0.1 % bad rows).
- `growth_yaml(t)`: the bundled policy with t more thresholds on each numeric fact, through refinements that
  keep its action and message on every order (see `growth_yaml`).
- `marketplace_yaml(seed, countries)`: a marketplace policy of about 1,000 rules (50 countries, 20 categories)
  on top of the bundled one, and `marketplace_orders` with matching country and category columns.
- `probe_yaml(shape, n)`: policies built only to find durable_rules' size limits (not sensible policies).
"""

from .growth import GROWTH_FACTS, GROWTH_LANES, growth_thresholds, growth_yaml
from .marketplace import CATEGORIES, COUNTRIES, CountryTerms, marketplace_orders, marketplace_terms, marketplace_yaml
from .orders import AS_OF, synthetic_orders
from .probes import PROBE_SHAPES, probe_yaml
from .yamltext import dump_yaml

__all__ = [
    "AS_OF", "CATEGORIES", "COUNTRIES", "CountryTerms", "GROWTH_FACTS", "GROWTH_LANES", "PROBE_SHAPES", "dump_yaml",
    "growth_thresholds", "growth_yaml", "marketplace_orders", "marketplace_terms", "marketplace_yaml", "probe_yaml",
    "synthetic_orders",
]
