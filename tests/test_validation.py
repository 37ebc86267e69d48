"""The shared value checks: what they accept and the one message shape they raise."""

import math

import numpy as np
import pytest

from workbench._validation import check_choice, check_int, check_real, not_allowed


def test_not_allowed_names_the_value_and_what_is_allowed():
    error = not_allowed("n_init", 0, "an integer >= 1")
    assert isinstance(error, ValueError)
    assert str(error) == "n_init=0 is not allowed; use an integer >= 1"


def test_not_allowed_with_an_owner_names_the_record():
    error = not_allowed("df", 2.0, "a finite number > 2", owner="scenario")
    assert str(error) == "scenario df=2.0 is not allowed; df must be a finite number > 2"


def test_check_int_returns_an_int_and_rejects_bools_and_floats():
    assert check_int("n", np.int64(3), minimum=1) == 3
    assert type(check_int("n", np.int64(3), minimum=1)) is int
    for bad in (0, True, 2.0, "2"):
        with pytest.raises(ValueError, match=r"is not allowed; use an integer >= 1$"):
            check_int("n", bad, minimum=1)
    with pytest.raises(
        ValueError, match=r"^scenario n=1 is not allowed; n must be an integer >= 2$"
    ):
        check_int("n", 1, minimum=2, owner="scenario")


@pytest.mark.parametrize(
    ("bounds", "allowed"),
    [
        ({}, "a finite number"),
        ({"above": 0}, "a finite number > 0"),
        ({"at_least": 1}, "a finite number >= 1"),
        ({"below": 1}, "a finite number < 1"),
        ({"above": 0, "below": 1}, "a number in (0, 1)"),
        ({"at_least": 0.001, "below": 1}, "a number in [0.001, 1)"),
    ],
)
def test_check_real_says_what_is_allowed(bounds, allowed):
    with pytest.raises(ValueError) as info:
        check_real("x", math.inf, **bounds)
    assert str(info.value) == f"x=inf is not allowed; use {allowed}"


def test_check_real_accepts_values_within_bounds_and_appends_the_reason():
    assert check_real("x", 0.5, above=0, below=1) == 0.5
    assert check_real("x", 1, at_least=1) == 1.0
    for bad in (0.0, 1.0, math.nan, True):
        with pytest.raises(ValueError, match="is not allowed"):
            check_real("x", bad, above=0, below=1)
    with pytest.raises(ValueError) as info:
        check_real("df", 2.0, above=2, reason="the t covariance must exist", owner="scenario")
    assert str(info.value) == (
        "scenario df=2.0 is not allowed; df must be a finite number > 2 "
        "(the t covariance must exist)"
    )


def test_check_choice_lists_the_options():
    assert check_choice("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError) as info:
        check_choice("kind", "c", ("a", "b"))
    assert str(info.value) == "kind='c' is not allowed; use one of 'a', 'b'"
    with pytest.raises(ValueError, match="^scenario kind=1 is not allowed; kind must be one of"):
        check_choice("kind", 1, ("a", "b"), owner="scenario")
