"""PT2E graphs for int8 with the XNNPACK quantizer: the graph it annotates, its observers, and the int8 model of a
quantization-aware training state. ExecuTorch's int8 (``mcq.export.executorch``), quantization-aware training
(``mcq.train.qat``) and the ONNX export of a QAT checkpoint (``mcq.export.onnx``) share them.

Quantization-aware training fine-tunes the graph ``qat_graph`` makes: the model's inference form as
``for_quantization`` gives it, fake-quantized where the quantizer will quantize it (``prepare_qat_pt2e``,
symmetric per-channel weights, moving-average activation ranges). Its state holds the fine-tuned weights under the
model's own names and each fake quantizer's range; ``qat_weights`` puts the weights back into the float model and
``qat_int8`` rebuilds the graph at any input size, loads the state and converts it, so the int8 model has the
ranges learnt in training, not a calibration's. One difference stays (torchao 0.18): in training an activation's
scale is floored at 2**-14 (the fake quantizer's eps), while ``convert_pt2e`` takes it from the range itself, so an
activation whose range is tiny (FastViT's layer-scaled branches, about 3e-5 wide) gets a finer scale in the int8
model than in training (2.6e-7 against 6.1e-5, seen in ``tests/test_qat.py``'s model).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import torch

from mcq.models.delegation import IDENTITIES, rewrite_graph, unshare_weights
from mcq.models.export_speed import faster_passes

# torchao's activation observers for the XNNPACK quantizer, in order of cost (histogram is the quantizer's default);
# weights are per-channel min-max in each
CALIBRATIONS = {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
                "histogram": "HistogramObserver"}


def keeps_float(scope: str, modules: tuple[str, ...]) -> bool:
    """Whether an op of module ``scope`` (``""``: the root) lies inside one of ``modules``."""
    return any(scope == m or scope.startswith(m + ".") for m in modules)


def norms_as_convs(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every ``BatchNorm2d`` that does not close a conv of an ``nn.Sequential`` replaced by the same
    affine map as a depthwise 1x1 conv.

    ``prepare_pt2e`` (torchao 0.18) folds a batch norm into the conv that feeds it even when the conv's output has
    other users, which then get the normalised values: in FastViT's attention stage the position encoding's conv
    feeds both the first block's norm and its residual, and the fold alone moved a depth model's output by 8%
    (mean relative error, before any quantization). A norm that is not a conv's sole consumer is left unfolded.
    """
    model = copy.deepcopy(model)
    closes_conv = {id(seq[i + 1]) for seq in model.modules() if isinstance(seq, torch.nn.Sequential)
                   for i in range(len(seq) - 1) if isinstance(seq[i], torch.nn.modules.conv._ConvNd)}
    for parent in list(model.modules()):
        for name, bn in parent.named_children():
            if type(bn) is torch.nn.BatchNorm2d and id(bn) not in closes_conv:
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv = torch.nn.Conv2d(bn.num_features, bn.num_features, 1, groups=bn.num_features)
                conv.weight.data = scale.detach().view(-1, 1, 1, 1).clone()
                conv.bias.data = (bn.bias - bn.running_mean * scale).detach().clone()
                setattr(parent, name, conv)
    return model.eval()


def _config(method: str | None):
    """The XNNPACK quantizer's symmetric per-channel config with the activation observer of ``method``; ``None``:
    its quantization-aware config (fake quantizers with moving-average ranges)."""
    import torchao.quantization.pt2e as observers
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    if method is None:
        return get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    config = get_symmetric_quantization_config(is_per_channel=True)
    observer = getattr(observers, CALIBRATIONS[method]).with_args(eps=2**-12)  # the quantizer's own eps
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer)
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def for_quantization(model: torch.nn.Module, example: torch.Tensor,
                     dynamic_batch: bool = False) -> tuple[torch.fx.GraphModule, Counter]:
    """The exported graph that PT2E quantizes, and the changes made for XNNPACK before quantizing (identities
    dropped, shared conv weights copied: ``unshared_weights``). ``dynamic_batch``: any batch size (traced with
    two: from one, torch.export specialises the batch axis)."""
    if dynamic_batch:
        example = example[:1].expand(2, *example.shape[1:])
    batch = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    graph = torch.export.export(norms_as_convs(model), (example,), dynamic_shapes=batch).module()
    done = rewrite_graph(graph, IDENTITIES, fold=False)
    if copies := unshare_weights(graph):
        done["unshared_weights"] = copies
    return graph, done


def _scope(node: torch.fx.Node) -> str:
    """The module whose forward made ``node`` (``""``: the root or none)."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else ""


def prepared(graph: torch.fx.GraphModule, method: str, float_modules: tuple[str, ...] = ()) -> torch.fx.GraphModule:
    """``graph`` (copied) with ``method``'s observers on every op outside ``float_modules``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(_config(method))
    if float_modules:
        quantizer.set_filter_function(lambda node: not keeps_float(_scope(node), float_modules))
    with faster_passes():
        return prepare_pt2e(copy.deepcopy(graph), quantizer)


def observers(graph: torch.fx.GraphModule) -> dict[str, torch.nn.Module]:
    """The observer of each observed node of a prepared graph, by the node's name."""
    return {n.args[0].name: getattr(graph, n.target) for n in graph.graph.nodes
            if n.op == "call_module" and n.target.startswith("activation_post_process")}


def calibrate(graph: torch.fx.GraphModule, calib: torch.Tensor) -> None:
    """Run the calibration images through a prepared graph, one at a time."""
    with torch.no_grad():
        for x in calib:
            graph(x[None])


def _qat_prepared(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` with the XNNPACK quantizer's fake quantizers, in train mode."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    with faster_passes():
        graph = prepare_qat_pt2e(graph, XNNPACKQuantizer().set_global(_config(None)))
    allow_exported_model_train_eval(graph)
    graph.train()  # returns None once allowed
    return graph


def qat_graph(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``model``'s graph fake-quantized for quantization-aware training at ``example``'s size, any batch, in train
    mode; ``train()`` and ``eval()`` work on it (they switch its batch norms)."""
    return _qat_prepared(for_quantization(model, example, dynamic_batch=True)[0])


def qat_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The float model whose weights are those of a ``qat_graph`` state (``model``: its inference form, any
    weights); raises ``ValueError`` naming a weight the state lacks."""
    model = norms_as_convs(model)
    wanted = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}  # not in exported graphs
    if missing := sorted(wanted - set(state)):
        raise ValueError(f"{len(missing)} weights of the model not in the quantization-aware state, e.g. {missing[0]}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return model


def _renamed(state: dict[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with its weights under the prefix ``keys`` give them (that of a module wrapping the trained one);
    the fake quantizers are the graph's own, unprefixed."""
    weights = [k for k in state if not k.startswith("activation_post_process")]
    first, weights = weights[0], set(weights)
    for prefix in sorted({k[: len(k) - len(first)] for k in keys if k.endswith(first)}, key=len):
        if all(prefix + k in keys for k in weights):
            return {(prefix + k if k in weights else k): v for k, v in state.items()}
    raise ValueError(f"the model's graph has no weight named like the quantization-aware state's {first}")


def qat_int8(model: torch.nn.Module, state: dict[str, torch.Tensor], example: torch.Tensor,
             dynamic_batch: bool = False) -> tuple[torch.fx.GraphModule, Counter]:
    """The int8 graph (PT2E-converted) of ``model`` at ``example``'s size with the weights and ranges of a
    ``qat_graph`` state, and the changes made for XNNPACK (``for_quantization``). ``model`` may wrap the trained
    model (e.g. ``mcq.export.labels.Labels``). Raises ``ValueError`` when the state does not fit the graph."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    graph, done = for_quantization(model, example, dynamic_batch)
    graph = _qat_prepared(graph)
    found = graph.load_state_dict(_renamed(state, set(graph.state_dict())), strict=False)
    if found.unexpected_keys or [k for k in found.missing_keys if not k.endswith("num_batches_tracked")]:
        raise ValueError(f"the quantization-aware state does not fit the model's graph ({len(found.missing_keys)} "
                         f"missing, {len(found.unexpected_keys)} unexpected)")
    with faster_passes():
        converted = convert_pt2e(move_exported_model_to_eval(graph))
    for module in converted.modules():  # its ops are in eval form already; exported models refuse ``eval()``
        module.training = False
    return converted, done
