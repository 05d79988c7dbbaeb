"""A misspelt value of a setting with fixed choices names the nearest one (docs22):
``routing_policy = "slo-awre"`` said only which values are allowed, and
``[autoscaling] policy = "predictve"`` listed the five policies without the one meant."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from gateway.settings_errors import describe_error

CASES = [
    ({"routing_policy": "slo-awre"}, "routing_policy", "did you mean 'slo-aware'?"),
    ({"access_log": "jsn"}, "access_log", "did you mean 'json'?"),
    ({"autoscaling": {"policy": "predictve"}}, "autoscaling", "did you mean 'predictive'?"),
    ({"burst": {"store": {"kind": "sq"}}}, "burst.store", "did you mean 'sqs'?"),
    ({"burst": {"platform": {"kind": "aws_lamda"}}}, "burst.platform", "'aws_lambda'?"),
]


@pytest.mark.parametrize("values, where, hint", CASES)
def test_a_misspelt_choice_names_the_nearest(values, where, hint):
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    text = describe_error(refused.value, Settings)
    assert text.startswith(f"invalid setting {where}: ") and text.endswith(f"{hint})"), text


def test_a_choice_far_from_every_one_gets_no_guess():
    with pytest.raises(ValidationError) as refused:
        Settings(routing_policy="fastest")
    text = describe_error(refused.value, Settings)
    assert "Input should be 'vm-only'" in text and "did you mean" not in text
