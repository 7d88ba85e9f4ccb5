"""RunConfig checks its own options (issue 32): the CLI only parses, and any other caller (a
benchmark, a test, a script) gets the same one-line errors in the words of the flags."""

from __future__ import annotations

import pytest

from overnight.errors import OvernightError
from overnight.night.config import RunConfig
from overnight.night.screen import ScreenSettings


@pytest.mark.parametrize(
    "given, needle",
    [
        ({"experiments": 0}, "--experiments must be at least 1"),
        ({"hours": float("nan")}, "--hours must be a positive number"),
        ({"budget": 1e308}, "--budget must be seconds, above 0 and at most a week"),
        ({"seed": -1}, "--seed must be from 0 to"),
        ({"tag": "x" * 300}, "characters long — pick a --tag of at most"),
        ({"slots": 0}, "--slots must be at least 1"),
        ({"gpus": ("garbage",)}, "--gpus needs device ids"),
        ({"gpus": ()}, "--gpus needs device ids"),
        ({"ray_address": "auto"}, "--ray-address needs --executor ray"),
        ({"screening": ScreenSettings(fraction=1.5)}, "--screen-fraction must be between 0 and 1"),
    ],
)
def test_a_bad_option_is_one_line_naming_its_flag(given, needle):
    with pytest.raises(OvernightError, match=needle.replace("(", r"\(")) as caught:
        RunConfig(**given)
    assert "\n" not in str(caught.value)


def test_good_options_pass_as_given():
    cfg = RunConfig(tag="night-1", experiments=3, hours=0.5, budget=30, slots=2, gpus=("0", "GPU-ab12"))
    assert (cfg.tag, cfg.slots, cfg.gpus) == ("night-1", 2, ("0", "GPU-ab12"))
    assert RunConfig(executor="ray", ray_address="auto").ray_address == "auto"
