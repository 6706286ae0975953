"""Cut a frozen backbone into a shared trunk and the adapted rest, at its first adapted layer.

Every shard of an ensemble adapts the same layers, so everything that does not depend on an
adapted layer's output is the same for every shard: it runs once per input (the *trunk*), and
only the rest runs per shard. The cut is taken on the ``torch.fx`` graph of the bare backbone
(head removed), so it works for any traceable network, residual skips included: a value the
trunk computes and the rest reads (a skip connection's input, say) is one more trunk output.

A network ``torch.fx`` cannot trace is not cut: its trunk is the identity and the whole network
is the rest (correct, only slower); :attr:`TrunkSplit.traced` says which case holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn


class _Tracer(fx.Tracer):
    """Stops at the adapted layers and at the modules and functions timm marks as untraceable
    (its own asserts and shape-dependent helpers)."""

    def __init__(self, leaves: set[str]) -> None:
        try:  # deferred: timm (~1 s) only when a split is built; its fx no-trace registry
            from timm.models._features_fx import get_notrace_functions, get_notrace_modules

            self._notrace = tuple(get_notrace_modules())
            autowrap = tuple(get_notrace_functions())
        except ImportError:  # pragma: no cover - timm is a dependency
            self._notrace, autowrap = (), ()
        super().__init__(autowrap_functions=autowrap)
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self._leaves or (self._notrace and isinstance(m, self._notrace)):
            return True
        return super().is_leaf_module(m, qualname)


@dataclass(frozen=True)
class TrunkSplit:
    """``rest(*trunk(x))`` equals the backbone on ``x``; ``trunk`` holds no adapted layer."""

    trunk: nn.Module
    rest: nn.Module
    traced: bool


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x,)


class _Whole(nn.Module):
    """The untraced fallback's rest: the whole network, keeping its parameter names."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _depends(graph: fx.Graph, adapted: set[str]) -> set[fx.Node]:
    """Nodes whose value depends on an adapted layer's output (the graph is in order)."""
    dep: set[fx.Node] = set()
    for node in graph.nodes:
        adapted_call = node.op == "call_module" and node.target in adapted
        if adapted_call or any(a in dep for a in node.all_input_nodes):
            dep.add(node)
    return dep


def split_at_adapted(model: nn.Module, adapted: Iterable[str]) -> TrunkSplit:
    """Split ``model`` (eval mode, frozen) below its first adapted layer (names as in
    ``model.named_modules()``)."""
    adapted = set(adapted)
    try:
        graph = _Tracer(adapted).trace(model)
    except Exception:
        return TrunkSplit(_Identity(), _Whole(model), traced=False)
    dep = _depends(graph, adapted)
    output = next(n for n in graph.nodes if n.op == "output")
    # what the rest reads from the trunk: non-dependent values used by dependent nodes (or by
    # the output); parameters and buffers (get_attr) are read by the rest itself
    boundary = [
        n
        for n in graph.nodes
        if n not in dep
        and n.op not in ("get_attr", "output")
        and any(u in dep or u is output for u in n.users)
    ]
    trunk_graph, env = fx.Graph(), {}
    for node in graph.nodes:
        if node not in dep and node.op != "output":
            env[node] = trunk_graph.node_copy(node, lambda n: env[n])
    trunk_graph.output(tuple(env[n] for n in boundary))
    rest_graph, renv = fx.Graph(), {}
    for i, node in enumerate(boundary):
        renv[node] = rest_graph.placeholder(f"trunk_{i}")
    for node in graph.nodes:
        if node in renv:
            continue
        if node.op == "get_attr" or node in dep or node is output:
            renv[node] = rest_graph.node_copy(node, lambda n: renv[n])
    return TrunkSplit(_module(model, trunk_graph), _module(model, rest_graph), True)


def _module(model: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A module of ``graph`` without the nodes it does not need (computed once, not twice)."""
    module = fx.GraphModule(model, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def trunk_outputs(split: TrunkSplit, x: torch.Tensor) -> tuple[Any, ...]:
    out = split.trunk(x)
    return tuple(out) if isinstance(out, tuple | list) else (out,)
