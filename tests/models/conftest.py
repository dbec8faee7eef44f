"""Images for the derainer tests, made in code: a natural photograph (scikit-image's
astronaut, 256×256) clean and with rendered rain, and the tensor conversions."""

import numpy as np
import pytest
from PIL import Image

from rainbench.synth.render import render


@pytest.fixture(scope="session")
def clean() -> np.ndarray:
    from skimage.data import astronaut

    image = Image.fromarray(astronaut()).resize((256, 256), Image.Resampling.LANCZOS)
    return np.asarray(image)


@pytest.fixture(scope="session")
def rainy(clean):
    """rainy(recipe, seed) → uint8 H×W×3, rendered once per argument pair."""
    cache: dict[tuple[str, int], np.ndarray] = {}

    def make(recipe: str, seed: int) -> np.ndarray:
        if (recipe, seed) not in cache:
            cache[recipe, seed] = render(clean, recipe, seed).rain
        return cache[recipe, seed]

    return make


@pytest.fixture(scope="session")
def to_batch():
    """to_batch(*images): uint8 H×W×3 images → a float32 N×3×H×W batch in [0, 1]."""
    torch = pytest.importorskip("torch")

    def convert(*images: np.ndarray):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255

    return convert


@pytest.fixture(scope="session")
def to_image():
    """to_image(batch, index=0): one image of a batch as uint8 H×W×3, rounded as the
    leaderboard rounds outputs."""

    def convert(batch, index: int = 0) -> np.ndarray:
        return batch[index].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()

    return convert
