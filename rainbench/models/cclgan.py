"""CCLGAN's rainy→clean generator (Zhao et al. 2024) as the `cclgan` derainer: a
CycleGAN ResNet generator, its checkpoint files (from `rainbench train cclgan`, or
converted from a CycleGAN-layout state dict with `rainbench cclgan import-checkpoint`).
Training it is `rainbench.train.cclgan`.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rainbench.models.base import Derainer, load_network, load_weights, read_checkpoint
from rainbench.models.registry import DerainerError
from rainbench.models.trained_on import trained_on

CHECKPOINT_FORMAT = "rainbench-cclgan"


class ResidualBlock(nn.Module):
    """x + [pad → conv 3×3 → IN → ReLU → pad → conv 3×3 → IN](x), reflect padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's resnet_9blocks generator (convs with bias, InstanceNorm without affine
    parameters, no dropout, tanh output), one `model` sequence so that its state dict
    has CycleGAN's keys:

        0–3    reflect pad 3, conv 7×7 3 → c, IN, ReLU
        4–6    conv 3×3 stride 2 c → 2c, IN, ReLU
        7–9    conv 3×3 stride 2 2c → 4c, IN, ReLU
        10…    `blocks` residual blocks at 4c
        then   two transposed convs (4c → 2c → c) with IN, ReLU; reflect pad 3, conv 7×7
               c → 3, tanh

    Inputs in [-1, 1] with sides that are multiples of 4 (`derain` pads to that).
    """

    def __init__(self, channels: int = 64, blocks: int = 9):
        super().__init__()
        c = channels
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7), nn.InstanceNorm2d(c), nn.ReLU(True)]
        for factor in (1, 2):
            layers += [nn.Conv2d(c * factor, c * factor * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(c * factor * 2), nn.ReLU(True)]  # fmt: skip
        layers += [ResidualBlock(4 * c) for _ in range(blocks)]
        for factor in (4, 2):
            layers += [nn.ConvTranspose2d(c * factor, c * factor // 2, 3, stride=2, padding=1,
                                          output_padding=1),
                       nn.InstanceNorm2d(c * factor // 2), nn.ReLU(True)]  # fmt: skip
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.channels, self.blocks = channels, blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """The outputs of the `layers` (indices into `model`), from one pass that stops
        at the last of them."""
        outputs = []
        for index, layer in enumerate(self.model[: max(layers) + 1]):
            x = layer(x)
            if index in layers:
                outputs.append(x)
        return outputs


def translate_any_size(generator: ResnetGenerator, x: torch.Tensor) -> torch.Tensor:
    """The generator on an image of any size: reflect-padded to multiples of 4 (its two
    down-samplings) and to at least 8 px (2 px at the residual blocks, which pad by
    reflection and normalise per image), the padding cut off again."""
    h, w = x.shape[-2:]
    pad_h, pad_w = max(-h % 4, 8 - h), max(-w % 4, 8 - w)
    if pad_h or pad_w:
        mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return generator(x)[..., :h, :w]


def translate_in_tiles(generator: ResnetGenerator, x: torch.Tensor, tile: int) -> torch.Tensor:
    """`translate_any_size(generator, x)` computed layer by layer with only pieces of
    about tile×tile on the generator's device: the whole-image activations stay where `x`
    is (host memory), each convolution runs piece by piece with the halo it reads, and
    every InstanceNorm uses the statistics of the whole image. So the result is the
    whole-image result up to floating-point rounding, whatever the tile size: tiles that
    each normalised themselves would differ by a tone shift per tile."""
    device = next(generator.parameters()).device
    h, w = x.shape[-2:]
    pad_h, pad_w = max(-h % 4, 8 - h), max(-w % 4, 8 - w)
    if pad_h or pad_w:
        mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

    def conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
        x = F.pad(x, (p, p, p, p))  # zeros: Conv2d's own padding mode here
        rows = _pieces((x.shape[-2] - k) // s + 1, max(1, tile // s))
        columns = _pieces((x.shape[-1] - k) // s + 1, max(1, tile // s))
        out = torch.empty((x.shape[0], layer.out_channels, rows[-1][1], columns[-1][1]))
        for top, bottom in rows:
            for left, right in columns:
                piece = x[..., top * s : (bottom - 1) * s + k, left * s : (right - 1) * s + k]
                result = F.conv2d(piece.to(device), layer.weight, layer.bias, stride=s)
                out[..., top:bottom, left:right] = result.to(out.device, out.dtype)
        return out

    def transposed(layer: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
        # Input row i reaches output rows s·i − p … s·i − p + k − 1, so output rows
        # [s·first, s·last) gather input rows first − (k − 1 − p) // s … last + (p − 1) // s
        # (those inside the picture).
        (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
        height, width = x.shape[-2:]
        out_height = (height - 1) * s - 2 * p + k + layer.output_padding[0]
        out_width = (width - 1) * s - 2 * p + k + layer.output_padding[1]
        if (out_height, out_width) != (s * height, s * width):
            raise TypeError(f"no tiled form for {layer}: its output is not {s}× its input")
        out = torch.empty((x.shape[0], layer.out_channels, out_height, out_width))
        rows, columns = _pieces(height, max(1, tile // s)), _pieces(width, max(1, tile // s))
        for first_row, last_row in rows:
            for first_column, last_column in columns:
                top = max(0, first_row - (k - 1 - p) // s)
                left = max(0, first_column - (k - 1 - p) // s)
                bottom = min(height, last_row + (p - 1) // s + 1)
                right = min(width, last_column + (p - 1) // s + 1)
                piece = x[..., top:bottom, left:right].to(device)
                result = F.conv_transpose2d(piece, layer.weight, layer.bias, stride=s)
                out[..., s * first_row : s * last_row, s * first_column : s * last_column] = result[
                    ...,
                    s * (first_row - top) + p : s * (last_row - top) + p,
                    s * (first_column - left) + p : s * (last_column - left) + p,
                ].to(out.device, out.dtype)
        return out

    def run(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                x = conv(layer, x)
            elif isinstance(layer, nn.ConvTranspose2d):
                x = transposed(layer, x)
            elif isinstance(layer, ResidualBlock):
                x = x + run(layer.conv_block, x)
            elif isinstance(layer, (nn.ReflectionPad2d, nn.InstanceNorm2d, nn.ReLU, nn.Tanh)):
                x = layer(x)  # no weights: the whole image, where it is
            else:
                raise TypeError(f"no tiled form for {type(layer).__name__}")
        return x

    return run(generator.model, x.float())[..., :h, :w]


def _pieces(length: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive pieces of `size` covering 0…length."""
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def load_generator(state: dict, where: str, part: str = "derain") -> ResnetGenerator:
    """The `part` generator of a loaded checkpoint (`where`) at the size its config
    records, in eval mode; a CheckpointError when its weights do not fit that size."""
    weights = state.get(part)
    return load_network(
        ResnetGenerator, state.get("config", {}), weights, f"{where} ({part} generator)"
    )


def import_cyclegan_generator(path: Path, out: Path, source_sha256: str) -> None:
    """Write a `cclgan` checkpoint from a CycleGAN-layout rainy→clean generator state
    dict (CycleGAN's, CUT's or CCLGAN's `latest_net_G_A.pth` without anti-aliasing):
    its width and block count are read from the tensors' shapes."""
    from rainbench.models.nlcl.checkpoint import save_atomic

    state = load_weights(path)
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        state = {}  # no state dict: said below as the CycleGAN layout missing
    state = {k.removeprefix("module."): v for k, v in state.items()}
    first = state.get("model.1.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 4:
        raise DerainerError(f"{path} is not a CycleGAN-layout generator (no model.1.weight)")
    size = {
        "channels": first.shape[0],
        "blocks": len({k.split(".")[1] for k in state if ".conv_block." in k}),
    }
    generator = load_network(ResnetGenerator, size, state, f"{path} (a ResNet generator)")
    channels, blocks = size["channels"], size["blocks"]
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "step": None,
        "config": {"channels": channels, "blocks": blocks},
        "derain": generator.state_dict(),
        "imported_from": source_sha256,
    }
    save_atomic(state, out)


class CCLGANDerainer(Derainer):
    """The rainy→clean generator of a CCLGAN checkpoint, at full resolution. Results of
    an imported checkpoint are named `cclgan-published`."""

    name = "cclgan"
    version = "2"  # 2: tiles normalised with the whole image's statistics

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        super().__init__(device)
        state = read_checkpoint(
            checkpoint,
            CHECKPOINT_FORMAT,
            "a rainbench CCLGAN checkpoint (train one with rainbench train cclgan, or "
            "convert one with rainbench cclgan import-checkpoint)",
        )
        self.generator = load_generator(state, str(checkpoint)).to(device)
        self.step = state.get("step")
        self.imported_from = state.get("imported_from")
        self.trained_on = trained_on(state)
        config = state.get("config")
        # A smoke test's weights (no semantic encoder learnt from) are told apart.
        self.random_encoder = isinstance(config, dict) and config.get("random_encoder") is True
        if self.imported_from:
            self.name = f"{self.name}-published"

    def derain(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = translate_any_size(self.generator, batch.to(self.device).float() * 2 - 1)
        return ((output + 1) / 2).clamp(0, 1).to(batch.device, batch.dtype)

    def derain_in_tiles(self, batch: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        """Only pieces of about tile×tile on the device, with whole-image InstanceNorm
        statistics (`translate_in_tiles`): the whole-image output, no overlap needed."""
        with torch.inference_mode():
            output = translate_in_tiles(self.generator, batch.float().cpu() * 2 - 1, tile)
        return ((output + 1) / 2).clamp(0, 1).to(batch.device, batch.dtype)

    def options(self) -> dict:
        if self.imported_from:
            return {"step": self.step, "imported_from": self.imported_from}
        if self.random_encoder:
            return {"step": self.step, "random_encoder": True}
        return {"step": self.step}
