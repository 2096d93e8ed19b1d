"""Read and edit hidden states inside any HF transformer via forward hooks.

Hidden-state index convention (same as HF `output_hidden_states`): 0 = the input of the first block
(embeddings), L >= 1 = the output of block L-1. Index L = depth is the last block's output, *before*
any final norm a decoder applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .errors import UserError


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer's list of blocks: the longest ModuleList whose items share one class."""
    best: nn.ModuleList | None = None
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
                best = module
    if best is None:
        raise TypeError(f"cannot find transformer blocks in {type(model).__name__}")
    return best


def depth(model: nn.Module) -> int:
    return len(find_blocks(model))


def check_layer(model: nn.Module | int, layer: int) -> None:
    """`model` is the model itself or its depth (number of blocks)."""
    n = model if isinstance(model, int) else depth(model)
    if not 0 <= layer <= n:
        raise UserError(f"layer {layer} is out of range for this model (0 = embeddings .. {n} = last block): pass a layer in 0..{n}")


def _hidden_from_output(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_output(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _register(model: nn.Module, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    """Register a hook that calls `fn(hidden)` at hidden-state index `layer`; a returned tensor replaces it."""
    blocks = find_blocks(model)
    check_layer(model, layer)
    if layer == 0:

        def pre_hook(module, args, kwargs):
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = fn(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(module, args, output):
        new = fn(_hidden_from_output(output))
        return None if new is None else _replace_output(output, new)

    return blocks[layer - 1].register_forward_hook(post_hook)


@contextmanager
def edit_hidden(model: nn.Module, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, every forward pass replaces hidden state `layer` by `fn(hidden)`."""
    handle = _register(model, layer, fn)
    try:
        yield
    finally:
        handle.remove()


class StopForward(Exception):
    """Raised by a capture hook once the highest requested layer is reached."""


@contextmanager
def capture(model: nn.Module, layers: list[int], stop: bool = True) -> Iterator[dict[int, torch.Tensor]]:
    """Collect hidden states at `layers` into the yielded dict during a forward pass.

    With `stop=True` the pass is cut short at the highest layer (raise of `StopForward`), so callers
    wrap the forward call in `run_until_stop`.
    """
    store: dict[int, torch.Tensor] = {}
    top = max(layers)
    handles = []
    for layer in sorted(set(layers)):

        def grab(hidden, layer=layer):
            store[layer] = hidden
            if stop and layer == top:
                raise StopForward
            return None

        handles.append(_register(model, layer, grab))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def run_until_stop(forward: Callable[[], object]) -> None:
    try:
        forward()
    except StopForward:
        pass


@contextmanager
def bypass_blocks(model: nn.Module, upto: int) -> Iterator[None]:
    """Blocks 0..upto-1 return their input unchanged: used when a hook overwrites hidden state `upto`
    anyway, so computing the blocks below it would be wasted work."""
    blocks = list(find_blocks(model))[:upto]

    def passthrough(*args, **kwargs):
        return args[0] if args else kwargs["hidden_states"]

    for block in blocks:
        block.forward = passthrough  # instance attribute shadows the class method; hooks still fire
    try:
        yield
    finally:
        for block in blocks:
            del block.forward
