"""Built-in models, and user models by import string.

The built-ins are small enough to evaluate on a CPU and span the architectures loss-landscape
papers compare: an MLP, a small CNN, and a small ResNet with BatchNorm together with the same
network without skip connections (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets",
found that skips keep the landscape of deep nets smooth and convex-looking; ``resnet`` versus
``resnet-noskip`` reproduces that comparison at small scale).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losslens._imports import is_import_string, resolve_import_string
from losslens.errors import ConfigError

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn", "resnet", "resnet-noskip")
MAX_PARAMETERS = 2_000_000_000  # a built-in model's options may not ask for more (counted before allocating)
_RESNET_BLOCK_PARAMS = sum(2 * 9 * c * c + 4 * c for c in (16, 32, 64))  # one block per stage, BatchNorm included


def build_model(
    name: str,
    *,
    input_shape: Sequence[int] = (1, 8, 8),
    num_classes: int = 10,
    seed: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build a built-in model by name, or a user model from an import string.

    Built-in names (``MODEL_NAMES``):

    - ``mlp``: ``Flatten``, then ``Linear`` layers with ReLU between them; option ``hidden`` (the
      hidden widths, default ``(64, 32)``). The first parametrized module is the first ``Linear``,
      acting on the flattened input.
    - ``cnn``: ``Conv2d(C,16,3,pad 1)`` ReLU ``MaxPool2d(2)`` ``Conv2d(16,32,3,pad 1)`` ReLU
      ``MaxPool2d(2)`` ``Flatten`` ``Linear(32*(H//4)*(W//4), num_classes)``; inputs of at least 4x4.
    - ``resnet``: a CIFAR-style ResNet (He et al. 2016): conv3x3 to 16 channels, BatchNorm, ReLU,
      three stages of basic blocks with 16/32/64 channels and strides 1/2/2, global average pooling,
      ``Linear``; option ``blocks_per_stage`` (default 1). Shortcuts that change the shape are the
      parameter-free "option A" ones (subsample, then zero-pad the new channels).
    - ``resnet-noskip``: the same network with the skip connections removed. Both have exactly the
      same parameter names and shapes, so a checkpoint or a direction of one fits the other.

    Options are checked before anything is allocated: widths and block counts are positive integers,
    and the model may have at most ``MAX_PARAMETERS`` (2e9) parameters.

    Any other name must be an import string ``package.module:factory``; the factory is called with
    no arguments and must return an ``nn.Module`` (``input_shape`` and ``num_classes`` do not apply).

    Args:
        name: a built-in name or an import string.
        input_shape: shape of one input sample, without the batch dimension: ``(C, H, W)`` for
            ``cnn`` and the ResNets, any shape for ``mlp`` (it flattens).
        num_classes: number of outputs (classes, or regression targets).
        seed: seeds the initialization through a forked RNG, so the same seed gives the same
            weights and the global RNG state is left as it was. ``None`` draws from the global RNG.
        **kwargs: options of the built-in model (see above).

    Returns:
        The model, in train mode, on the CPU.

    Raises:
        ConfigError: an unknown name or option, a bad import string, or a factory that does not
            return an ``nn.Module``.
    """
    make = _maker(name, tuple(int(s) for s in input_shape), int(num_classes), kwargs)
    if seed is None:
        model = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {name!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def _maker(name: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> Callable[[], object]:
    """What builds model ``name`` when called: a built-in builder with its options checked, or a user's
    factory (imported now) that takes no options."""
    if name in _BUILDERS:
        builder, options = _BUILDERS[name]
        unknown = sorted(set(kwargs) - set(options))
        if unknown:
            valid = ", ".join(options) if options else "none"
            raise ConfigError(f"model {name!r} has no option {', '.join(unknown)}; valid options: {valid}")
        return functools.partial(builder, input_shape, num_classes, **kwargs)
    if not is_import_string(name):
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}, or an import string "
                          "package.module:factory")
    if kwargs:
        raise ConfigError(f"model {name!r} is built by a factory called with no arguments; it takes no options (got "
                          f"{', '.join(sorted(kwargs))})")
    factory = resolve_import_string(name, what="model factory")
    if not callable(factory):
        raise ConfigError(f"model factory {name!r} is not callable (type {type(factory).__name__})")
    return factory


def _mlp(input_shape: tuple[int, ...], num_classes: int, hidden: Sequence[int] = (64, 32)) -> nn.Module:
    width = 1
    for s in input_shape:
        width *= s
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__") or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ConfigError(f"mlp: hidden must be a list of positive layer widths, e.g. [64, 32]; got {hidden!r}")
    sizes = [width, *hidden, num_classes]
    _check_size("mlp", f"hidden={list(hidden)!r}", sum((a + 1) * b for a, b in zip(sizes, sizes[1:])))
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _check_size(model: str, option: str, n_params: int) -> None:
    if n_params > MAX_PARAMETERS:
        raise ConfigError(f"model {model!r} with {option} would have {n_params:.3g} parameters, more than the "
                          f"{MAX_PARAMETERS:.0e} a built-in model may have")


def _image_shape(input_shape: tuple[int, ...], model: str, min_size: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise ConfigError(
            f"model {model!r} needs image inputs of shape (C, H, W) with H, W >= {min_size}; "
            f"the data has samples of shape {list(input_shape)}"
        )
    return input_shape  # type: ignore[return-value]


def _cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = _image_shape(input_shape, "cnn", 4)
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 4) * (w // 4), num_classes),
    )


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two conv3x3-BatchNorm layers; with ``skip``, ``relu(F(x) + shortcut(x))``, else ``relu(F(x))``.

    The shortcut is the identity, or, where the block halves the resolution and widens the
    channels, the parameter-free "option A" of He et al. 2016: ``x[:, :, ::s, ::s]`` zero-padded to
    the new channel count. So the block has the same parameters with and without the skip.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, *, skip: bool):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.extra_channels = c_out - c_in
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.skip:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra_channels:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
            out = out + shortcut
        return F.relu(out)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, skip={self.skip}"


class ResNet(nn.Module):
    """conv3x3(16)-BN-ReLU, stages of ``BasicBlock`` (16/32/64 channels, strides 1/2/2), pool, Linear."""

    def __init__(self, in_channels: int, num_classes: int, *, blocks_per_stage: int = 1, skip: bool = True):
        super().__init__()
        if isinstance(blocks_per_stage, bool) or not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
            raise ConfigError(f"blocks_per_stage must be an integer of at least 1, got {blocks_per_stage!r}")
        _check_size("resnet" if skip else "resnet-noskip", f"blocks_per_stage={blocks_per_stage}",
                    blocks_per_stage * _RESNET_BLOCK_PARAMS)
        self.conv1 = _conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        stages, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(int(blocks_per_stage)):
                blocks.append(BasicBlock(c_in, c_out, stride if i == 0 else 1, skip=skip))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _resnet(input_shape: tuple[int, ...], num_classes: int, blocks_per_stage: int = 1, *, skip: bool = True):
    c, _, _ = _image_shape(input_shape, "resnet" if skip else "resnet-noskip", 4)
    return ResNet(c, num_classes, blocks_per_stage=blocks_per_stage, skip=skip)


def _resnet_noskip(input_shape: tuple[int, ...], num_classes: int, blocks_per_stage: int = 1) -> nn.Module:
    return _resnet(input_shape, num_classes, blocks_per_stage, skip=False)


_BUILDERS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {
    "mlp": (_mlp, ("hidden",)),
    "cnn": (_cnn, ()),
    "resnet": (_resnet, ("blocks_per_stage",)),
    "resnet-noskip": (_resnet_noskip, ("blocks_per_stage",)),
}
