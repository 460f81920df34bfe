"""JSON value identity (splitbrain.history.values): the comparisons checkers rely on."""

import math

from splitbrain.history.values import json_equal, json_key


def test_booleans_are_not_numbers():
    assert not json_equal(True, 1)
    assert not json_equal(False, 0)
    assert not json_equal([True], [1])
    assert not json_equal({"a": False}, {"a": 0})
    assert json_key(True) != json_key(1)
    assert len({json_key(True), json_key(1), json_key(False), json_key(0)}) == 4


def test_numbers_compare_by_value_and_nan_equals_itself():
    assert json_equal(1, 1.0)
    assert json_equal(float("nan"), float("nan"))
    assert json_equal(math.inf, math.inf)
    assert not json_equal(math.inf, -math.inf)
    assert not json_equal(1, 1.5)
    assert not json_equal("1", 1)
    assert not json_equal(None, 0)


def test_containers():
    assert json_equal([1, [2, "x"]], [1.0, [2, "x"]])
    assert not json_equal([1, 2], [2, 1])
    assert json_equal({"a": 1, "b": [True]}, {"b": [True], "a": 1})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert hash(json_key({"a": [1, {"b": None}]})) == hash(json_key({"a": [1.0, {"b": None}]}))
