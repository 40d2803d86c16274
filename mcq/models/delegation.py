"""Keep a graph inside the XNNPACK delegate: exact rewrites of what it has no kernel for, and what was left out.

ExecuTorch 1.5.1's XNNPACK partitioner takes no ``upsample_nearest2d``, ``native_layer_norm``, ``roll``, adaptive
pooling to a size that does not divide the input, ``unbind``, or the guard of ``_safe_softmax`` that
``scaled_dot_product_attention`` becomes. Each such op runs as a portable kernel (scalar loops) between two delegate
calls, with layout changes at each boundary. ``rewrite_graph`` rewrites them, on the ATen graph of
``torch.export``, into ops the delegate takes, computing the same function (``REWRITES``):

- nearest upsampling by integer factors: each pixel concatenated with copies of itself along a new axis, then each
  row (a depthwise transposed convolution with unit weights is exact too, but XNNPACK runs it as a generic
  deconvolution: 94 ms against 13 ms for the copies, MCi0 SemanticFPN at 512 px, one thread);
- layer norm over the last dimension: mean and variance as a linear layer with weights 1/C, then subtract,
  multiply, ``rsqrt`` and the affine map;
- ``roll``: two slices and a concatenation per rolled dimension;
- ``scaled_dot_product_attention`` (no dropout) and batched ``matmul``: ``softmax(q k^T * scale + mask) v`` with
  ``bmm`` (``matmul`` adds no-op expands that stay outside);
- adaptive average pooling: a linear layer over W, then over H, with the pooling windows as weights;
- ``unbind``: slices; an ``expand`` or ``pad`` that changes nothing: dropped;
- a weight of lower rank than the map it scales (FastViT's layer scale, ``[C, 1, 1]``): given the map's rank, so
  that the delegate keeps the op channels-last instead of transposing the map around it (56 transposes, 78 ms, fell
  to 42 and 60 ms on that model);
- what depends on no input (Swin's shifted-window mask, built in every call): computed once.

``unshare_weights`` prepares a graph for PT2E int8, and ``delegation`` reads a lowered program: its delegate
segments and every op left outside them.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce
from itertools import count
from typing import Callable

import torch
from torch import fx

aten = torch.ops.aten
_IDS = count()


class _Graph:
    """Insertion helpers for one node's replacement: ``call`` adds an op, ``const`` a tensor the graph holds."""

    def __init__(self, gm: fx.GraphModule, node: fx.Node):
        self.gm, self.node, self.graph = gm, node, gm.graph

    def call(self, target, *args) -> fx.Node:
        node = self.graph.call_function(target, args)
        node.meta["val"] = target(*fx.node.map_arg(args, _meta))  # its shape, for the rewrites of later nodes
        return node

    def const(self, value: torch.Tensor) -> fx.Node:
        name = f"_mcq_const_{next(_IDS)}"
        while hasattr(self.gm, name):
            name = f"_mcq_const_{next(_IDS)}"
        self.gm.register_buffer(name, value)
        node = self.graph.get_attr(name)
        node.meta["val"] = value
        return node


def _meta(node: fx.Node) -> torch.Tensor:
    """A tensor on the meta device shaped as ``node``'s value."""
    val = node.meta["val"]
    return torch.empty(val.shape, dtype=val.dtype, device="meta")


def _attr(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    """The tensor a ``get_attr`` node reads (a parameter, buffer or lifted constant, by dotted name)."""
    return reduce(getattr, node.target.split("."), gm)


def _val(node) -> torch.Tensor | None:
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def _nearest(g: _Graph, x: fx.Node, output_size=None, scale_factors=None, *_) -> fx.Node | None:
    shape = _val(x).shape
    if output_size is None:
        if scale_factors is None or any(s != int(s) for s in scale_factors):
            return None
        output_size = [int(d * s) for d, s in zip(shape[-2:], scale_factors)]
    factors = [o // i for o, i in zip(output_size, shape[-2:])]
    if any(o != f * i for o, f, i in zip(output_size, factors, shape[-2:])) or len(shape) != 4:
        return None
    (n, c, h, w), (fh, fw) = shape, factors
    x = _repeat(g, g.call(aten.reshape.default, x, [n, c, h, w, 1]), fw, 4)  # each pixel fw times along a new axis
    x = _repeat(g, g.call(aten.reshape.default, x, [n, c, h, 1, w * fw]), fh, 3)  # each row fh times
    return g.call(aten.reshape.default, x, [n, c, h * fh, w * fw])


def _repeat(g: _Graph, x: fx.Node, times: int, dim: int) -> fx.Node:
    """``times`` copies of ``x`` concatenated along ``dim`` (copies by ``clone``: XNNPACK's partitioner counts a
    node once and takes no concatenation of one tensor with itself)."""
    return g.call(aten.cat.default, [x, *(g.call(aten.clone.default, x) for _ in range(times - 1))], dim)


def _adaptive_avg_pool(g: _Graph, x: fx.Node, output_size) -> fx.Node | None:
    """Adaptive average pooling is linear in each spatial axis: a linear layer over W, then over H, whose weights
    are the pooling windows' 1/size (exact for any input size, divisible or not)."""
    shape = _val(x).shape
    if len(shape) != 4:
        return None
    for axis, (size, out) in enumerate(zip(shape[-2:], output_size)):
        windows = torch.zeros(out, size, dtype=_val(x).dtype)
        for i in range(out):  # torch's windows: [floor(i * size / out), ceil((i + 1) * size / out))
            start, end = (i * size) // out, -((-(i + 1) * size) // out)
            windows[i, start:end] = 1.0 / (end - start)
        x = g.call(aten.transpose.int, x, -1, -2) if axis == 0 else x
        x = g.call(aten.linear.default, x, g.const(windows))
        x = g.call(aten.transpose.int, x, -1, -2) if axis == 0 else x
    return x


def _layer_norm(g: _Graph, x: fx.Node, normalized_shape, weight=None, bias=None, eps=1e-5, *_) -> fx.Node | None:
    if len(normalized_shape) != 1:
        return None
    width = normalized_shape[0]
    average = g.const(torch.full((1, width), 1.0 / width, dtype=_val(x).dtype))
    centred = g.call(aten.sub.Tensor, x, g.call(aten.linear.default, x, average))
    variance = g.call(aten.linear.default, g.call(aten.mul.Tensor, centred, centred), average)
    eps = g.const(torch.tensor([eps], dtype=_val(x).dtype))
    scale = g.call(aten.rsqrt.default, g.call(aten.add.Tensor, variance, eps))
    out = g.call(aten.mul.Tensor, centred, scale)
    if weight is not None:
        out = g.call(aten.mul.Tensor, out, weight)
    if bias is not None:
        out = g.call(aten.add.Tensor, out, bias)
    return out


def _roll(g: _Graph, x: fx.Node, shifts, dims=()) -> fx.Node | None:
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    if len(shifts) != len(dims) or not dims:  # a roll of the flattened tensor: left as it is
        return None
    shape = _val(x).shape
    for shift, dim in zip(shifts, dims):
        size = shape[dim]
        shift %= size
        if shift:
            tail = g.call(aten.slice.Tensor, x, dim, size - shift, size)
            head = g.call(aten.slice.Tensor, x, dim, 0, size - shift)
            x = g.call(aten.cat.default, [tail, head], dim)
    return x


def _attention(g: _Graph, q: fx.Node, k: fx.Node, v: fx.Node, attn_mask=None, dropout_p=0.0, is_causal=False,
               *, scale=None, enable_gqa=False) -> fx.Node | None:
    if dropout_p or is_causal or enable_gqa or _val(q).shape[-3] != _val(k).shape[-3]:
        return None
    scale = 1.0 / math.sqrt(_val(q).shape[-1]) if scale is None else scale
    if attn_mask is not None and _val(attn_mask).dtype == torch.bool:
        return None
    (*batch, n, d), m, dv = _val(q).shape, _val(k).shape[-2], _val(v).shape[-1]
    scores = _bmm(g, q, g.call(aten.transpose.int, k, -2, -1), batch, (n, d), (d, m))
    scores = g.call(aten.mul.Tensor, scores, g.const(torch.tensor([scale], dtype=_val(q).dtype)))
    if attn_mask is not None:
        scores = g.call(aten.add.Tensor, scores, attn_mask)
    return _bmm(g, g.call(aten.softmax.int, scores, -1), v, batch, (n, m), (m, dv))


def _bmm(g: _Graph, a: fx.Node, b: fx.Node, batch: list[int], a_mat: tuple[int, int],
         b_mat: tuple[int, int]) -> fx.Node:
    """``a @ b`` over the leading dimensions ``batch`` as one ``bmm`` (``matmul`` adds no-op expands outside the
    delegate)."""
    prod = g.call(aten.bmm.default, g.call(aten.reshape.default, a, [-1, *a_mat]),
                  g.call(aten.reshape.default, b, [-1, *b_mat]))
    return g.call(aten.reshape.default, prod, [*batch, a_mat[0], b_mat[1]])


def _matmul(g: _Graph, a: fx.Node, b: fx.Node) -> fx.Node | None:
    sa, sb = _val(a).shape, _val(b).shape
    if len(sa) < 3 or sa[:-2] != sb[:-2]:
        return None
    return _bmm(g, a, b, list(sa[:-2]), tuple(sa[-2:]), tuple(sb[-2:]))


def _binary(g: _Graph, a, b, **alpha) -> fx.Node | None:
    """A weight of fewer dimensions than the map it scales or shifts (FastViT's layer scale, ``[C, 1, 1]``) given
    the map's rank: the delegate then keeps the op in its channels-last layout instead of transposing the map to
    NCHW and back around it."""
    if alpha or not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or b.op != "get_attr" or _val(a) is None:
        return None
    rank, weight = _val(a).dim(), _attr(g.gm, b)
    if weight.dim() >= rank or rank != 4:
        return None
    return g.call(g.node.target, a, g.const(weight.detach().reshape((1,) * (rank - weight.dim()) + weight.shape)))


def _expand(g: _Graph, x: fx.Node, size, *, implicit=False) -> fx.Node | None:
    """An expand to the shape the tensor has already (a class token at batch 1) is the tensor itself."""
    shape = list(_val(x).shape)
    return x if len(size) == len(shape) and all(s in (-1, d) for s, d in zip(size, shape)) else None


def _pad(g: _Graph, x: fx.Node, pad, *_) -> fx.Node | None:
    """A pad of zero width (Swin's patch merging on an even map) is the tensor itself: as an op, XNNPACK refuses
    it in a quantized graph (``Failed to create StaticConstantPad node``)."""
    return x if not any(pad) else None


def _unbind(g: _Graph, x: fx.Node, dim: int = 0) -> list[fx.Node]:
    """``unbind`` as slices (``squeeze`` and ``select`` are not delegated): a list, like the op's."""
    shape = list(_val(x).shape)
    dim %= len(shape)
    rest = shape[:dim] + shape[dim + 1:]
    return [g.call(aten.reshape.default, g.call(aten.slice.Tensor, x, dim, i, i + 1), rest)
            for i in range(shape[dim])]


REWRITES: dict[object, Callable[..., fx.Node | None]] = {
    aten.upsample_nearest2d.vec: _nearest,
    aten.upsample_nearest2d.default: _nearest,
    aten.layer_norm.default: _layer_norm,
    aten.adaptive_avg_pool2d.default: _adaptive_avg_pool,
    aten.roll.default: _roll,
    aten.scaled_dot_product_attention.default: _attention,
    aten.matmul.default: _matmul,
    aten.unbind.int: _unbind,
    aten.expand.default: _expand,
    aten.mul.Tensor: _binary,
    aten.add.Tensor: _binary,
    aten.pad.default: _pad,
    aten.constant_pad_nd.default: _pad,
}

# ops that are the identity: dropped before PT2E quantization too, which would otherwise observe their input and
# output apart and give a neighbour (a max pool) input and output ranges that XNNPACK refuses to differ
# (``Failed to create maxpool2d node``)
IDENTITIES = {op: REWRITES[op] for op in (aten.expand.default, aten.pad.default, aten.constant_pad_nd.default)}

_NOT_CONSTANT = ("rand", "empty", "normal", "bernoulli", "dropout", "uniform", "quantize")


def _fold_constants(gm: fx.GraphModule) -> int:
    """Compute once what depends on no input and no weight (Swin's shifted-window mask, built in every call with
    ``zeros`` and slice assignments of constants), held as constant tensors; returns how many uses were replaced.
    Each use gets the value as it is at that point of the program, since the folded ops may write in place.

    What is computed from weights is left alone (Swin's relative position bias, gathered from its table: as a
    folded constant, XNNPACK 1.5.1 fails to propagate the shapes of the add that takes it, at run time)."""
    values: dict[fx.Node, object] = {}
    weights = dict(gm.named_parameters())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and node.target not in weights:  # buffers and constants (an assigned value)
            values[node] = _attr(gm, node)
            continue
        if (node.op == "call_function" and not any(w in str(node.target) for w in _NOT_CONSTANT)
                and all(i in values for i in node.all_input_nodes)):
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
            values[node] = node.target(*args, **kwargs)
            continue
        for value_node in node.all_input_nodes:
            if value_node.op == "call_function" and isinstance(values.get(value_node), torch.Tensor):
                with gm.graph.inserting_before(node):
                    const = _Graph(gm, node).const(values[value_node].detach().clone())
                node.replace_input_with(value_node, const)
                folded += 1
    for node in reversed(values):  # in-place ops too, which dead-code elimination keeps
        if node.op == "call_function" and not node.users:
            gm.graph.erase_node(node)
    return folded


def rewrite_graph(gm: fx.GraphModule, rewrites: dict = REWRITES, fold: bool = True) -> Counter:
    """Fold the constant parts of the graph (with ``fold``), then rewrite, in place, every op of ``rewrites`` that
    its rewrite takes; returns how many of each were rewritten or folded."""
    done: Counter = Counter()
    if fold and (folded := _fold_constants(gm)):
        done["constants"] = folded
    for node in list(gm.graph.nodes):
        rewrite = rewrites.get(node.target) if node.op == "call_function" else None
        if rewrite is None:
            continue
        with gm.graph.inserting_before(node):
            new = rewrite(_Graph(gm, node), *node.args, **node.kwargs)
        if isinstance(new, list):  # a multi-output op: its getitem users take the new nodes
            for user in list(node.users):
                user.replace_all_uses_with(new[user.args[1]])
                gm.graph.erase_node(user)
        elif new is not None:
            node.replace_all_uses_with(new)
        if new is not None:
            gm.graph.erase_node(node)
            done[str(node.target).split(".")[1]] += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return done


def unshare_weights(gm: fx.GraphModule) -> int:
    """Give every convolution but the first its own copy of a weight that several share (ViT-Adapter's ConvFFN runs
    one depthwise conv on three levels), in place; returns how many copies were made.

    PT2E quantizes each use with its own ranges, and XNNPACK 1.5.1 refuses a shared quantized weight at load
    (``Failed to create depthwise convolution node``); copies are quantized alike and keep the convs in int8."""
    copies = 0
    for node in list(gm.graph.nodes):
        convs = [u for u in node.users if "conv" in str(u.target)] if node.op == "get_attr" else []
        for conv in convs[1:]:
            with gm.graph.inserting_before(conv):
                copy = _Graph(gm, conv).const(_attr(gm, node).detach().clone())
            conv.replace_input_with(node, copy)
            copies += 1
    gm.recompile()
    return copies


def for_xnnpack(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.export.ExportedProgram, Counter]:
    """The exported program of ``model`` (float, or a converted PT2E module) with the ops XNNPACK lacks rewritten
    (``rewrite_graph``), and the count of rewrites."""
    gm = torch.export.export(model, (example,)).module()
    done = rewrite_graph(gm)
    return torch.export.export(gm, (example,)), done


def delegation(graph_module: fx.GraphModule) -> dict:
    """The delegate segments of a lowered edge program and the compute ops left outside them (op -> count)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    outside = {op.removeprefix("aten_"): b.non_delegated for op, b in sorted(info.delegation_by_operator.items())
               if b.non_delegated and op != "getitem"}
    return {"segments": info.num_delegated_subgraphs, "delegated_ops": info.num_delegated_nodes,
            "ops_outside": outside}


def format_delegation(name: str, info: dict) -> str:
    """One line for the terminal: the delegate's segments and what ran outside them."""
    outside = ", ".join(f"{op} x{n}" for op, n in sorted(info["ops_outside"].items(), key=lambda kv: -kv[1]))
    return (f"{name}: {info['segments']} delegate segment{'s' * (info['segments'] != 1)}, {info['delegated_ops']} ops "
            f"delegated; " + (f"outside: {outside}" if outside else "nothing outside"))
