"""The rain recipes: for each rain type, its physical model (how the rain layer is
composited) and the ranges its random parameters are drawn from. Pure data, so the
split writer and the docs can list recipes without importing the renderer.
"""

from dataclasses import dataclass

# Lengths, widths and blur radii are given in pixels of a 480-pixel-high image (the
# scale the literature quotes them at) and scaled with the image height when rendered;
# densities are drops per pixel at that scale, so they too are relative to image size.
REFERENCE_HEIGHT = 480

# What each compositing name means; B is the clean image, R the rain (streak) layer,
# T the transmission, A the grey atmospheric light, all in [0, 1] on sRGB values.
COMPOSITING = {
    "additive": "O = clip(B + R, 0, 1)",
    "veil": "O = clip(T·(B_blur + R) + (1 − T)·A, 0, 1),  T = exp(−β·d)",
}

Range = tuple[float, float]

# The grey atmospheric light A is the scene's mean brightness plus a drawn lift (the
# veil is ambient light scattered towards the camera, so a night scene gets a dark veil
# and a bright day a light one), clipped to this range (Li et al., CVPR 2019).
ATMOSPHERIC_LIGHT = (0.25, 0.95)


@dataclass(frozen=True)
class Recipe:
    """One rain type's model; every drawn parameter is uniform in its range.

    Bump `version` whenever a change alters the pixels rendered for a given seed, so
    splits rendered before and after are never mixed or compared as the same data.
    """

    name: str
    version: str
    description: str
    compositing: str  # a key of COMPOSITING
    intensity: Range  # target mean rain intensity E[R], the main knob
    layers: int  # streak directions, each with its own angle, length, width, density
    angle: Range  # degrees from horizontal (90 = vertical) of the first direction
    spread: Range | None  # |offset| in degrees of every further direction from the first
    length: Range  # motion-blur length, px at 480p
    width: Range  # Gaussian σ across the streak, px at 480p
    density: Range  # drops per pixel at 480p, per direction
    mist: Range | None = None  # isotropic blur σ of the rain layer, px at 480p
    beta: Range | None = None  # scattering coefficient β of the veil
    depth_near: Range | None = None  # pseudo-depth d at the bottom row
    depth_far: Range | None = None  # pseudo-depth d at the top row
    light_lift: Range | None = None  # A − the clean image's mean luma, before clipping
    background_blur: bool = False  # blur B with σ = min(1, |N(0.5, 0.5)|) px at 480p

    def ranges(self) -> dict[str, Range]:
        """Every drawn scalar parameter's range, by its name in `Rendered.params`."""
        names = ("intensity", "beta", "depth_near", "depth_far", "light_lift", "mist")
        found = {name: getattr(self, name) for name in names}
        return {name: bounds for name, bounds in found.items() if bounds is not None}


# What `rainbench synth` renders unless told otherwise: one split per rain type.
DEFAULT_RECIPES = ("drizzle", "streak", "storm", "fog-like")

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="drizzle",
            version="1",
            description="fine, faint, sparse short streaks; no veil",
            compositing="additive",
            intensity=(0.01, 0.02),
            layers=1,
            angle=(80.0, 100.0),
            spread=None,
            length=(10.0, 20.0),
            width=(0.25, 0.45),
            density=(0.004, 0.008),
        ),
        Recipe(
            name="streak",
            version="1",
            description="distinct, clearly visible streaks in one direction; no veil",
            compositing="additive",
            intensity=(0.025, 0.06),
            layers=1,
            angle=(80.0, 100.0),
            spread=None,
            length=(25.0, 50.0),
            width=(0.5, 0.9),
            density=(0.002, 0.005),
        ),
        Recipe(
            name="storm",
            version="1",
            description=(
                "dense long streaks under a strong veil (accumulation); mild background blur"
            ),
            compositing="veil",
            intensity=(0.06, 0.13),
            layers=1,
            angle=(80.0, 100.0),
            spread=None,
            length=(35.0, 60.0),
            width=(0.6, 1.1),
            density=(0.012, 0.03),
            beta=(2.6, 4.6),
            depth_near=(0.05, 0.12),
            depth_far=(0.2, 0.4),
            light_lift=(0.1, 0.35),
            background_blur=True,
        ),
        Recipe(
            name="fog-like",
            version="1",
            description="the veil dominates; dense rain blurred into mist, no distinct streaks",
            compositing="veil",
            intensity=(0.01, 0.03),
            layers=1,
            angle=(80.0, 100.0),
            spread=None,
            length=(21.0, 40.0),
            width=(0.5, 1.0),
            density=(0.03, 0.06),
            mist=(2.0, 4.0),
            beta=(2.6, 4.6),
            depth_near=(0.1, 0.2),
            depth_far=(0.35, 0.6),
            light_lift=(0.15, 0.45),
        ),
        Recipe(
            name="multi-streak",
            version="1",
            description="streaks in three directions, as in Rain1400; no veil",
            compositing="additive",
            intensity=(0.04, 0.1),
            layers=3,
            angle=(80.0, 100.0),
            spread=(10.0, 30.0),
            length=(21.0, 60.0),
            width=(0.4, 0.9),
            density=(0.002, 0.006),
        ),
        Recipe(
            name="heavy-streak",
            version="1",
            description=(
                "bright, wide streaks in three directions, heavy rain as in Rain100H; no veil"
            ),
            compositing="additive",
            intensity=(0.12, 0.2),
            layers=3,
            angle=(80.0, 100.0),
            spread=(10.0, 30.0),
            length=(30.0, 60.0),
            width=(1.2, 2.0),
            density=(0.002, 0.004),
        ),
    )
}
