"""The rain-type features: their names, meanings and version (a catalogue with no
heavy imports, for the manifest schema and the tagger). `rainbench.tagging.measure`
computes them.
"""

# Bump whenever a change alters any feature's value or adds one: stored features of
# another version are recomputed by `rainbench tag`, never mixed with these. Version 2
# added the thin-line (`thin_*`, `ridge_*`) features; the others kept their values.
FEATURES_VERSION = "2"
# Versions whose features keep their values in this one: a tagger fitted to any of
# them still reads these features right.
COMPATIBLE_VERSIONS = ("1", "2")
# A feature beyond this in size is no measurement (features are fractions, contrasts and
# counts): the products and sums it enters overflow, which is then its doing, not the
# tagger's parameters'.
FAR_BEYOND = 1e100

# Rows of the working image: the smallest preview a 12 MP JPEG decodes to is ≈ 378
# rows, so this needs no upscaling for real captures.
WORK_HEIGHT = 384
MAX_ASPECT = 4  # wider panoramas are measured on their central 4:1 part
# The thin-line features look at the preview's own pixels, up to this many rows: a
# real streak is 1–3 px wide, and the 384-row working image would blur it away.
NATIVE_HEIGHT = 512
THIN_SIGMA = 1.0  # px of the preview: the ridge filter's scale for thin streaks
WIDE_SIGMA = 1.5  # px at WORK_HEIGHT: the same filter relative to the picture's size

# Below this many rows (before resizing) a capture is too small to see rain reliably.
TINY_HEIGHT = 192

BOX = 5  # the smoothing window whose residual is "high frequency", px at WORK_HEIGHT
DARK_PATCH = 9  # the dark channel's window, px at WORK_HEIGHT (15 at 600 rows in He et al.)
STREAK_BAND = 15.0  # degrees either side of the dominant angle that count as "along"
# px at WORK_HEIGHT: how far along a streak its residual persists, for every streak
# (drizzle's are ≈ 8–16 px long) and for long ones only (streak and storm: 20–50 px)
LENGTH_LAG, REACH_LAG = 6, 16
RUN_LAG = 12  # px at WORK_HEIGHT: the lag at which streak pixels should still line up
BLOCK = 32  # px at WORK_HEIGHT: the blocks that vote on an orientation

# (name, meaning) in manifest order; the column is `feat_<name>`.
FEATURES: tuple[tuple[str, str], ...] = (
    ("hf_share", "share of the luma variance in the high-pass residual Y − box5(Y)"),
    ("hf_level", "RMS of the high-pass residual, luma in [0, 1]"),
    ("streak_energy", "share of residual gradient energy within ±15° of the dominant angle"),
    ("streak_coherence", "global orientation coherence of the residual gradients, 0–1"),
    ("streak_angle", "dominant streak angle, degrees from horizontal (90 = vertical)"),
    ("streak_density", "share of pixels on a bright, oriented streak"),
    ("streak_length", "correlation of the residual with itself 6 px along the streak angle"),
    ("streak_anisotropy", "that correlation along minus across the streak angle"),
    ("streak_reach", "correlation of the residual with itself 16 px along the streak angle"),
    ("streak_run", "correlation of the streak-pixel mask with itself 12 px along the angle"),
    ("streak_agreement", "how far 32 px blocks agree on one orientation, each with one vote"),
    ("streak_blocks", "share of 32 px blocks oriented within ±15° of the agreed angle"),
    ("dark_channel", "mean dark channel (min over RGB and a 9 px window)"),
    ("transmission", "1 − 0.95 · mean(dark channel / atmospheric light), He et al."),
    ("veil_gradient", "dark channel, top third minus bottom third: a veil grows with depth"),
    ("contrast", "standard deviation of luma"),
    ("brightness", "mean luma"),
    ("black_level", "1st percentile of luma: a veil lifts the blacks"),
    ("saturation", "mean of (max − min) / max over RGB"),
    *(
        (f"{prefix}_{name}", f"{meaning}, {where}")
        for prefix, where in (
            ("thin", "σ 1 px on the preview (≤ 512 rows)"),
            ("ridge", "σ 1.5 px at 384 rows"),
        )
        for name, meaning in (
            ("polarity", "log of bright over dark along-ridge energy: rain only adds light"),
            ("coherence", "orientation coherence of the bright ridges (energy-weighted), 0–1"),
            ("excess", "bright-ridge coherence minus dark-ridge coherence"),
            ("density", "share of pixels on a significant bright along-ridge"),
            ("segments", "significant bright along-ridge segments ≥ 3 px long per 10⁴ px"),
            ("length", "median length of those segments, px along the ridge"),
            ("spread", "share of 6×6 grid cells holding a segment's centre"),
            ("on_dark", "share of ridge pixels on dark ground minus the picture's dark share"),
            ("clutter", "median ridge strength: texture, noise and ringing"),
        )
    ),
)
FEATURE_NAMES = tuple(name for name, _ in FEATURES)


def feature_column(name: str) -> str:
    return f"feat_{name}"


def unusable_features(row: dict) -> list[str]:
    """The feature columns of a samples row measured at this FEATURES_VERSION that hold
    no measurement: null, NaN, ±inf, or a value far beyond any picture's, which the
    tagger cannot judge. A row of another version is measured again whatever it holds
    (version 1 has no thin_* or ridge_* features)."""
    if row["features_version"] != FEATURES_VERSION:
        return []
    # NaN compares false with everything, so `not … <=` catches it with the infinities.
    return [
        column
        for column in map(feature_column, FEATURE_NAMES)
        if row[column] is None or not abs(row[column]) <= FAR_BEYOND
    ]


def stored_features(row: dict) -> dict[str, float] | None:
    """A samples row's features, where they are measurements of this FEATURES_VERSION
    that the tagger can judge; None where `rainbench tag` measures the capture again."""
    if row["features_version"] != FEATURES_VERSION or unusable_features(row):
        return None
    return {name: row[feature_column(name)] for name in FEATURE_NAMES}
