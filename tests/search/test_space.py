import json
import random

import pytest

from sqft.errors import SqftError
from sqft.search.space import SearchSpace, load_config, save_config


@pytest.fixture
def space():
    return SearchSpace(
        {"layer.0": [16, 32, 24, 8], "layer.1": [32, 24, 16], "layer.2": [8], "layer.3": [32, 16]}
    )


def test_spaces_are_sorted_descending_and_deduplicated():
    s = SearchSpace({"g": [8, 32, 16, 32]})
    assert s.spaces["g"] == (32, 16, 8)


def test_reference_configurations(space):
    assert space.maximal() == {"layer.0": 32, "layer.1": 32, "layer.2": 8, "layer.3": 32}
    assert space.minimal() == {"layer.0": 8, "layer.1": 16, "layer.2": 8, "layer.3": 16}
    # even-size spaces take the larger middle value: [32,24,16,8] → 24, [32,16] → 32; odd [32,24,16] → 24
    assert space.median() == {"layer.0": 24, "layer.1": 24, "layer.2": 8, "layer.3": 32}
    assert space.size() == 4 * 3 * 1 * 2


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"layer.0": 24, "layer.1": 24, "layer.2": 8, "layer.3": 32, "layer.9": 8}, "unknown group"),
        ({"layer.0": 24, "layer.1": 24, "layer.2": 8}, "lacks group"),
        ({"layer.0": 12, "layer.1": 24, "layer.2": 8, "layer.3": 32}, "not in its search space"),
        ({"layer.0": "24", "layer.1": 24, "layer.2": 8, "layer.3": 32}, "not in its search space"),
    ],
)
def test_validate_rejects_bad_configurations(space, bad, words):
    with pytest.raises(SqftError, match=words):
        space.validate(bad)


def test_bad_space_is_refused():
    with pytest.raises(SqftError):
        SearchSpace({})
    with pytest.raises(SqftError, match="positive"):
        SearchSpace({"g": [0, 8]})


@pytest.mark.parametrize("step", [1, 2, 3])
def test_neighbours_move_exactly_step_groups_by_one_position(space, step):
    anchor = space.median()
    got = space.neighbours(anchor, step, 1000, random.Random(0))
    assert len(got) == space.count_neighbours(anchor, step)  # small space: all of them, no duplicates
    assert len({space.key(c) for c in got}) == len(got)
    a = space.positions(anchor)
    for c in got:
        diff = [abs(p - q) for p, q in zip(space.positions(c), a, strict=True)]
        assert sum(d != 0 for d in diff) == step and max(diff) == 1


def test_neighbour_count_matches_enumeration(space):
    # median positions: layer.0 at 1/4 (2 moves), layer.1 at 1/3 (2), layer.2 fixed (0), layer.3 at 0/2 (1)
    assert space.count_neighbours(space.median(), 1) == 2 + 2 + 1
    assert space.count_neighbours(space.median(), 2) == 2 * 2 + 2 * 1 + 2 * 1
    assert space.count_neighbours(space.median(), 3) == 2 * 2 * 1


def test_neighbours_skip_visited_and_are_seeded(space):
    anchor = space.median()
    first = space.neighbours(anchor, 1, 3, random.Random(5))
    assert first == space.neighbours(anchor, 1, 3, random.Random(5))
    rest = space.neighbours(anchor, 1, 10, random.Random(5), visited={space.key(c) for c in first})
    assert len(rest) == 5 - 3
    assert not {space.key(c) for c in rest} & {space.key(c) for c in first}


def test_large_space_sampling_is_exact_step_and_unique():
    space = SearchSpace({f"layer.{i}": [32, 24, 16, 8] for i in range(40)})
    assert space.count_neighbours(space.median(), 3) > 4096  # rejection-sampling path
    a = space.positions(space.median())
    got = space.neighbours(space.median(), 3, 50, random.Random(1))
    assert len(got) == 50 and len({space.key(c) for c in got}) == 50
    for c in got:
        diff = [abs(p - q) for p, q in zip(space.positions(c), a, strict=True)]
        assert sum(d != 0 for d in diff) == 3 and max(diff) == 1


def test_impossible_step_is_refused(space):
    with pytest.raises(SqftError, match="step"):
        space.neighbours(space.median(), 4, 1, random.Random(0))  # only 3 groups can move


def test_config_json_round_trip(tmp_path, space):
    p = tmp_path / "c.json"
    save_config(space.minimal(), p)
    assert load_config(p, space) == space.minimal()
    p.write_text(json.dumps({"config": space.maximal(), "score": 0.5}))
    assert load_config(p, space) == space.maximal()
    p.write_text(json.dumps({"layer.0": 7}))
    with pytest.raises(SqftError):
        load_config(p, space)
