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
    # Version 2, on linear light (B, L, A linearised from sRGB): α is the share of the
    # exposure a drop covers each pixel, L the light the drops refract towards the camera.
    "physical": "O = clip(T·((1 − α)·B + α·L) + (1 − T)·A, 0, 1),  T = exp(−β·d)",
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
    rain_type: str  # the rain type of the dataset it stands for
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


@dataclass(frozen=True)
class PhysicalRecipe:
    """One rain type's physically based model (version 2, `rainbench.synth.physical`):
    drops of Marshall–Palmer sizes falling at terminal velocity in front of a pinhole
    camera, under a Koschmieder veil. Every drawn parameter is uniform in its range but
    the exposure time, uniform in log. Distances are in metres, so the drops do not
    depend on the image size (the splashes do: see docs/synthetic-rain.md's errata).
    """

    name: str
    version: str
    description: str
    rain_type: str
    rain_rate: Range  # R, mm/h
    exposure: Range  # shutter time, s (log-uniform)
    field_of_view: Range  # horizontal, degrees
    aperture: Range  # lens aperture diameter, mm: defocus of drops off the focus distance
    focus: Range  # focus distance, m
    drop_near: Range  # depth of the nearest drops drawn, m
    drop_far: Range  # depth of the farthest drops drawn, m; beyond, rain is only veil
    max_diameter: float  # drop sizes are truncated to [0.1, this] mm
    wind: float  # the largest |mean angle| of the fall from vertical, degrees
    wind_jitter: Range  # σ of each drop's angle about the mean, degrees
    brightness: Range  # drop radiance L over the scene's mean (sky-weighted) light
    mist: Range  # extinction of fine droplets added to the rain's, km⁻¹
    scene_near: Range  # scene depth at the bottom row, m
    scene_far: Range  # scene depth at and above the horizon, m
    horizon: Range  # horizon row, as a share of the height from the top
    light_lift: Range  # atmospheric light's sRGB luma − the scene's mean luma
    splashes: Range | None = None  # splashes per pixel of width per mm/h; None = none
    compositing: str = "physical"  # a key of COMPOSITING

    def ranges(self) -> dict[str, Range]:
        """Every drawn scalar parameter's range, by its name in `Rendered.params`."""
        names = (
            "rain_rate",
            "exposure",
            "field_of_view",
            "aperture",
            "focus",
            "drop_near",
            "drop_far",
            "wind_jitter",
            "brightness",
            "mist",
            "scene_near",
            "scene_far",
            "horizon",
            "light_lift",
            "splashes",
        )
        found = {name: getattr(self, name) for name in names}
        found["wind"] = (-self.wind, self.wind)
        return {name: bounds for name, bounds in found.items() if bounds is not None}


# What `rainbench synth` renders unless told otherwise: one split per rain type.
DEFAULT_RECIPES = ("drizzle", "streak", "storm", "fog-like")

RECIPES: dict[str, Recipe | PhysicalRecipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="drizzle",
            version="1",
            description="fine, faint, sparse short streaks; no veil",
            rain_type="drizzle",
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
            rain_type="streak",
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
            rain_type="storm",
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
            rain_type="fog-like",
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
            rain_type="streak",
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
            rain_type="streak",
            compositing="additive",
            intensity=(0.12, 0.2),
            layers=3,
            angle=(80.0, 100.0),
            spread=(10.0, 30.0),
            length=(30.0, 60.0),
            width=(1.2, 2.0),
            density=(0.002, 0.004),
        ),
        PhysicalRecipe(
            name="drizzle-v2",
            version="2",
            description="light rain: small faint drops and short streaks; no visible veil",
            rain_type="drizzle",
            rain_rate=(0.5, 2.5),
            exposure=(1 / 250, 1 / 60),
            field_of_view=(50.0, 80.0),
            aperture=(1.5, 6.0),
            focus=(3.0, 30.0),
            drop_near=(0.3, 0.6),
            drop_far=(4.0, 8.0),
            max_diameter=2.0,
            wind=10.0,
            wind_jitter=(1.0, 4.0),
            brightness=(10.0, 30.0),
            mist=(0.0, 0.0),
            scene_near=(3.0, 10.0),
            scene_far=(100.0, 300.0),
            horizon=(0.3, 0.6),
            light_lift=(0.05, 0.3),
        ),
        PhysicalRecipe(
            name="streak-v2",
            version="2",
            description="moderate rain, longer exposure: distinct streaks; a faint veil",
            rain_type="streak",
            rain_rate=(3.0, 15.0),
            exposure=(1 / 125, 1 / 30),
            field_of_view=(50.0, 80.0),
            aperture=(1.5, 6.0),
            focus=(3.0, 30.0),
            drop_near=(0.5, 1.0),
            drop_far=(6.0, 12.0),
            max_diameter=6.0,
            wind=20.0,
            wind_jitter=(1.0, 3.0),
            brightness=(20.0, 60.0),
            mist=(0.0, 0.0),
            scene_near=(3.0, 10.0),
            scene_far=(100.0, 400.0),
            horizon=(0.3, 0.6),
            light_lift=(0.05, 0.3),
        ),
        PhysicalRecipe(
            name="storm-v2",
            version="2",
            description="heavy rain (20–100 mm/h): dense streaks, a strong veil, splashes",
            rain_type="storm",
            rain_rate=(20.0, 100.0),
            exposure=(1 / 250, 1 / 30),
            field_of_view=(50.0, 80.0),
            aperture=(1.5, 6.0),
            focus=(3.0, 30.0),
            drop_near=(0.3, 0.8),
            drop_far=(6.0, 12.0),
            max_diameter=6.0,
            wind=30.0,
            wind_jitter=(2.0, 6.0),
            brightness=(12.0, 36.0),
            mist=(0.5, 3.0),
            scene_near=(3.0, 10.0),
            scene_far=(50.0, 200.0),
            horizon=(0.3, 0.6),
            light_lift=(0.1, 0.35),
            splashes=(0.002, 0.004),
        ),
        PhysicalRecipe(
            name="fog-like-v2",
            version="2",
            description="dense fine drops far away: the veil dominates, no distinct streaks",
            rain_type="fog-like",
            rain_rate=(1.0, 5.0),
            exposure=(1 / 500, 1 / 60),
            field_of_view=(50.0, 80.0),
            aperture=(1.5, 6.0),
            focus=(0.5, 2.0),
            drop_near=(3.0, 5.0),
            drop_far=(10.0, 20.0),
            max_diameter=1.0,
            wind=15.0,
            wind_jitter=(2.0, 8.0),
            brightness=(1.5, 3.0),
            mist=(6.0, 20.0),
            scene_near=(5.0, 15.0),
            scene_far=(50.0, 200.0),
            horizon=(0.3, 0.6),
            light_lift=(0.15, 0.45),
        ),
    )
}

# The physically based recipes (`PhysicalRecipe`, version 2).
V2_RECIPES = ("drizzle-v2", "streak-v2", "storm-v2", "fog-like-v2")
