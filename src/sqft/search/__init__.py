"""Search: choose a sub-adapter (a rank per group) from a trained NLS super-adapter (SPEC §4)."""

from sqft.search.api import STRATEGIES, SearchConfig, choose_configuration, resolve_adapter_config
from sqft.search.heuristics import HEURISTICS, resolve_config
from sqft.search.hill_climbing import CachedScorer, Evaluation, HillClimbingConfig, SearchResult, hill_climb
from sqft.search.space import Config, SearchSpace, load_config, save_config

__all__ = [
    "HEURISTICS",
    "STRATEGIES",
    "CachedScorer",
    "Config",
    "Evaluation",
    "HillClimbingConfig",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "choose_configuration",
    "hill_climb",
    "load_config",
    "resolve_adapter_config",
    "resolve_config",
    "save_config",
]
