"""`dcp`: He, Sun and Tang's dark channel prior (CVPR 2009, TPAMI 2011) for rain that
is mostly veil: heavy rain far away scatters light like fog, and removing that haze
restores the contrast it takes.
"""

import numpy as np

from rainbench.models.base import NumpyDerainer
from rainbench.models.filters import guided_filter, luma
from rainbench.models.options import MAX_WINDOW, number_option
from rainbench.windows import min_filter

# He et al.'s settings are for 600-row images: a 15 px patch, and a guided filter of
# radius 60 (4 patches) to refine the transmission. Both scale with the image height.
REFERENCE_ROWS = 600
REFERENCE_PATCH = 15
REFERENCE_RADIUS = 60


class DarkChannelDerainer(NumpyDerainer):
    """Per image I (RGB in [0, 1]), with a patch of `patch` px:

    1. dark(X) = the minimum over the patch around each pixel of X's smallest channel.
    2. The atmospheric light A is the mean colour of I over the brightest
       `light_fraction` (0.1 %) of dark(I). He et al. take the single brightest pixel
       there; the mean is steadier where a rain streak is the brightest thing.
    3. The transmission t = 1 − omega·dark(I / A), refined by a guided filter (radius,
       eps) with the luma of I as guide, so it follows edges instead of patches.
    4. The output is J = (I − A) / max(t, t0) + A, clipped to [0, 1].

    `patch` None is 15 px at 600 rows scaled to the image height (odd, at least 3) and
    `radius` None 60 px at 600 rows; A is estimated per image (per tile when tiled).
    """

    name = "dcp"
    version = "1"

    def __init__(
        self,
        device: str = "cpu",
        patch: int | None = None,
        omega: float = 0.95,
        t0: float = 0.1,
        light_fraction: float = 0.001,
        radius: int | None = None,
        eps: float = 0.001,
    ):
        super().__init__(device)
        self.patch = number_option(
            "dcp", "patch", patch, int, low=1, high=MAX_WINDOW, optional=True
        )
        fraction = {"kind": float, "low": 0, "low_open": True, "high": 1}
        self.omega = number_option("dcp", "omega", omega, **fraction)
        self.t0 = number_option("dcp", "t0", t0, **fraction)
        self.light_fraction = number_option("dcp", "light_fraction", light_fraction, **fraction)
        self.radius = number_option(
            "dcp", "radius", radius, int, low=1, high=MAX_WINDOW, optional=True
        )
        self.eps = number_option("dcp", "eps", eps, float, low=0, low_open=True)

    def options(self) -> dict:
        return {
            "patch": self.patch,
            "omega": self.omega,
            "t0": self.t0,
            "light_fraction": self.light_fraction,
            "radius": self.radius,
            "eps": self.eps,
        }

    def derain_images(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.derain_image(image) for image in images])

    def derain_image(self, image: np.ndarray) -> np.ndarray:
        """float32 H×W×3 in [0, 1] → the same, dehazed."""
        scale = image.shape[0] / REFERENCE_ROWS
        patch = self.patch or max(3, 2 * round((REFERENCE_PATCH * scale - 1) / 2) + 1)
        radius = self.radius or max(1, round(REFERENCE_RADIUS * scale))
        light = self.atmospheric_light(image, patch)
        transmission = 1 - self.omega * dark_channel(image / light, patch)
        transmission = guided_filter(luma(image), transmission, radius, self.eps)
        np.maximum(transmission, self.t0, out=transmission)
        out = image - light
        out /= transmission[..., None]
        out += light
        return np.clip(out, 0, 1, out=out)

    def atmospheric_light(self, image: np.ndarray, patch: int) -> np.ndarray:
        """A, float32 RGB: the mean of `image` over its haziest pixels."""
        dark = dark_channel(image, patch).ravel()
        count = max(1, round(self.light_fraction * dark.size))
        haziest = np.argpartition(dark, dark.size - count)[-count:]
        light = image.reshape(-1, 3)[haziest].mean(axis=0, dtype=np.float64)
        # A black frame has no light to divide by: A stays above one 8-bit level.
        return np.maximum(light, 1 / 255).astype(np.float32)


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """The minimum over the patch×patch window of each pixel's smallest channel, H×W."""
    channels_min = np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2])
    return min_filter(channels_min, patch)
