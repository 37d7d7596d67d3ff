"""One hook engine (`harness.hooks`) for interventions and edits: every hook has a name, the names can be
listed, and a hook comes off by its name or with all the others, leaving the model as it was."""

import pytest
import torch

from harness.hooks import Hooks
from harness.interventions import KVSwap, Sample, denoiser_hooks
from tests.conftest import tiny


def doubling(_module, _args, out):
    return out * 2


def test_hooks_are_listed_by_name_and_removed_by_name():
    layer, x = torch.nn.Linear(2, 2), torch.ones(1, 2)
    plain = layer(x)
    with Hooks() as hooks:
        hooks.forward("double", layer, doubling)
        hooks.forward("double_again", layer, doubling)
        assert hooks.names() == ["double", "double_again"]
        torch.testing.assert_close(layer(x), 4 * plain)
        hooks.remove("double")
        assert hooks.names() == ["double_again"]
        torch.testing.assert_close(layer(x), 2 * plain)
        with pytest.raises(KeyError, match="no hook 'doubel_again'; closest: double_again"):
            hooks.remove("doubel_again")
    assert not hooks.names()
    torch.testing.assert_close(layer(x), plain)


def test_a_name_is_used_once_and_a_refused_hook_is_not_left_behind():
    layer, x = torch.nn.Linear(2, 2), torch.ones(1, 2)
    hooks = Hooks()
    hooks.forward("double", layer, doubling)
    with pytest.raises(ValueError, match="hook 'double' is already registered"):
        hooks.forward("double", layer, doubling)
    torch.testing.assert_close(layer(x), 2 * torch.nn.functional.linear(x, layer.weight, layer.bias))
    hooks.remove()


def test_a_replaced_attribute_comes_back_on_removal():
    class Pipe:
        def encode(self):
            return "class"

    pipe = Pipe()
    with Hooks() as hooks:
        hooks.replace("wrap", pipe, "encode", lambda: "wrapped")
        assert pipe.encode() == "wrapped"
    assert pipe.encode() == "class" and "encode" not in vars(pipe)


def test_a_sweep_batch_names_its_hooks_by_module():
    adapter = tiny("sd15")
    site = adapter.sites.of_kind("cross_attn")[3].name
    rows = [Sample("a cat", 0), Sample("a dog", 0), Sample("a cat", 0, swaps=(KVSwap((site,), "a dog", mode="patch"),))]
    hooks, _counter = denoiser_hooks(adapter, rows, True, None)
    with hooks:
        assert hooks.names() == ["step_counter", f"moves/{site}.to_k", f"moves/{site}.to_v"]
    assert not hooks.names()
