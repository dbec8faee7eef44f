"""The frozen encoders of CCLGAN's semantic cycle contrast: VGG16 up to relu3_3 (the
default) and CLIP's ViT-B/32 image tower, each with the state-dict keys of its
published weights, which come from a local file (`rainbench weights import …`).
Random weights of the same architecture stand in for tests (`random_encoder`).
"""

from pathlib import Path

import torch
from torch import nn

from rainbench.files import file_sha256, regular_file
from rainbench.metrics.weights import OPENAI_VIT_B_32_SHA256
from rainbench.models.base import CheckpointError, load_weights
from rainbench.shards.dataset import DatasetError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """torchvision's vgg16().features up to relu3_3 (layers 0–15, state-dict keys
    `features.N.*`), returning relu1_2, relu2_2 and relu3_3 of images in [-1, 1]
    (normalised as ImageNet inputs first)."""

    taps = (3, 8, 15)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels_in = 3
        for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3))):
            if stage:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(convs):
                layers += [nn.Conv2d(channels_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels_in = width
        self.features = nn.Sequential(*layers)
        self.register_buffer(
            "mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs

    def load_published(self, path: Path) -> None:
        """torchvision's vgg16-397923af.pth: its `features` layers up to relu3_3."""
        state = load_weights(path)
        own = set(self.features.state_dict())
        self.features.load_state_dict(
            {
                k.removeprefix("features."): v
                for k, v in state.items()
                if k.removeprefix("features.") in own
            }
        )


def semantic_encoder(name: str, random: bool, weights_dir: Path | None = None) -> nn.Module:
    """The frozen encoder `name`, in eval mode: published weights from the weights
    directory unless `random`; a DatasetError naming the missing file otherwise."""
    from rainbench.metrics.registry import MetricError
    from rainbench.metrics.weights import require

    encoder = VGG16Features() if name == "vgg16" else CLIPImageEncoder()
    if not random:
        try:
            path = require(f"cclgan-{name}", weights_dir)
        except MetricError as error:
            raise DatasetError(f"CCLGAN's semantic contrast: {error}") from None
        encoder.load_published(path)
    return encoder.eval().requires_grad_(False)


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _CLIPBlock(nn.Module):
    """Pre-norm transformer block with CLIP's names (attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class CLIPImageEncoder(nn.Module):
    """CLIP's vision transformer (Radford et al., 2021), ViT-B/32 by default, with the
    published `visual.*` state-dict keys less the prefix; images in [-1, 1] are resized
    to `resolution` (bicubic) and normalised as CLIP's. Returns one level: the image
    embedding."""

    def __init__(self, width: int = 768, layers: int = 12, heads: int = 12, patch: int = 32,
                 resolution: int = 224, output: int = 512):  # fmt: skip
        super().__init__()
        scale = width**-0.5
        self.resolution = resolution
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        tokens = (resolution // patch) ** 2 + 1
        self.positional_embedding = nn.Parameter(scale * torch.randn(tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(
            *(_CLIPBlock(width, heads) for _ in range(layers))
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output))
        self.register_buffer("mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = torch.nn.functional.interpolate((x + 1) / 2, size=self.resolution, mode="bicubic",
                                            align_corners=False)  # fmt: skip
        x = self.conv1((x - self.mean) / self.std).flatten(2).transpose(1, 2)  # N×tokens×width
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype))
        x = self.transformer.resblocks(x)
        return [self.ln_post(x[:, 0]) @ self.proj]

    def load_published(self, path: Path) -> None:
        """OpenAI's ViT-B-32.pt (a TorchScript archive) or a plain state dict of the
        whole CLIP model: its `visual.*` tensors. A TorchScript archive is a program, so
        only OpenAI's own, known by its sha256, is loaded as one."""
        try:
            state = load_weights(path)
        except CheckpointError:  # OpenAI publishes TorchScript, which torch.load refuses
            if file_sha256(regular_file(path)) != OPENAI_VIT_B_32_SHA256:
                raise DatasetError(
                    f"CCLGAN's semantic contrast: {path} is neither OpenAI's ViT-B-32.pt "
                    f"(sha256 {OPENAI_VIT_B_32_SHA256[:8]}…) nor a state dict of plain "
                    "tensors; TorchScript from elsewhere is a program, and is not run"
                ) from None
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        visual = {k.removeprefix("visual."): v.float() for k, v in state.items()
                  if k.startswith("visual.")}  # fmt: skip
        self.load_state_dict(visual)
