"""Search: choose a sub-adapter (a rank per group) from a trained NLS super-adapter (SPEC §4)."""

from sqft.search.api import STRATEGIES, SearchConfig, choose_configuration, make_score_fn, run_search
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
    "make_score_fn",
    "resolve_config",
    "run_search",
    "save_config",
]
