"""How well a tagger agrees with a dataset's manual labels: rain types against labelled
types, the looks_rainy flag against "rain" and "clean" labels, and whether its
confidence means what it says (expected calibration error). The real test of tagging,
on the lab's own captures; `rainbench tag-eval DS` prints it.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from rainbench import __version__
from rainbench.ingest.tag import require_dataset
from rainbench.shards import manifest
from rainbench.shards.dataset import DatasetError, open_dataset
from rainbench.shards.fitted import active_tagger
from rainbench.tagging.features import FEATURE_NAMES, stored_features
from rainbench.tagging.scores import calibration_error, decide_all, f1_scores
from rainbench.tagging.tagger import RAIN_TYPES, UNLIKE, Tagger, load_tagger
from rainbench.versions import installed_versions


@dataclass
class LabelAgreement:
    """A tagger's decisions on manually labelled captures, as ingest would make them."""

    tagger: str  # its version
    fitted_to_these: bool  # the dataset's own fit moved from the shipped weights on its labels
    fitted_on: int | None  # how many rain-type labels that fit was made from (None: unknown)
    labels: dict[str, int]  # manual labels per rain type, and "clean"
    confusion: list[list[int]]  # rows: labelled type, columns: tagged (RAIN_TYPES order)
    f1: dict[str, float]  # per labelled type
    macro_f1: float | None  # None, as accuracy: no rain-type label with features to judge
    accuracy: float | None
    calibration_error: float | None  # ECE of the rain-type confidence
    rain_flagged: float | None  # share of rain-labelled captures whose P(rain) reaches the flag
    clean_flagged: float | None  # share of clean-labelled captures flagged
    unlike: int  # labelled captures with the unlike-calibration caveat
    unmeasured: int  # labelled captures without usable features of this version
    # What was judged and by what: the manifest the labels and features were read from.
    manifest_sha256: str | None = None
    rainbench_version: str = __version__
    # What computes the decisions from the stored features.
    versions: dict[str, str] = field(default_factory=lambda: installed_versions(("numpy",)))

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def to_lines(self) -> list[str]:
        head = f"tagger {self.tagger} on {sum(self.labels.values())} manual labels (" + (
            ", ".join(f"{name} {count}" for name, count in self.labels.items()) + ")"
        )
        lines = [head]
        if self.fitted_to_these:
            judged = sum(map(sum, self.confusion))
            made_from = (
                f"{self.fitted_on} of this dataset's rain-type labels ({judged} judged here)"
                if self.fitted_on is not None
                else "this dataset's labels"
            )
            lines.append(
                f"warning: this tagger was fitted to {made_from}; on the labels it learnt "
                "from this is not held-out agreement: `rainbench tag --fit` printed that, or "
                "use --tagger shipped"
            )
        if self.macro_f1 is None:
            # A table of zeros and a macro-F1 of 0 would read as a tagger always wrong.
            facts = ["no rain-type label to judge the rain type by"]
        else:
            lines.append("| labelled \\ tagged | " + " | ".join(RAIN_TYPES) + " |")
            lines.append("|---" * (len(RAIN_TYPES) + 1) + "|")
            for name, row in zip(RAIN_TYPES, self.confusion, strict=True):
                lines.append(f"| **{name}** | " + " | ".join(str(n) for n in row) + " |")
            facts = [f"macro-F1 {self.macro_f1:.3f}", f"accuracy {self.accuracy:.3f}"]
        if self.calibration_error is not None:
            facts.append(f"calibration error {self.calibration_error:.3f}")
        if self.rain_flagged is not None:
            facts.append(f"rain flagged {self.rain_flagged:.1%}")
        if self.clean_flagged is not None:
            facts.append(f"clean flagged {self.clean_flagged:.1%}")
        facts.append(f"{UNLIKE} {self.unlike}")
        lines.append("; ".join(facts))
        if self.unmeasured:
            lines.append(
                f"{self.unmeasured} labelled captures have no usable features: "
                "run rainbench tag to measure them"
            )
        return lines


def label_agreement(path, which: str = "active") -> LabelAgreement:
    """Agreement of the dataset's active tagger (`which` "active") or the shipped one
    ("shipped") with the manual labels of the dataset at `path`, from stored features."""
    dataset = open_dataset(path)  # a folder or an object store's URL
    require_dataset(dataset)
    tagger = active_tagger(dataset) if which == "active" else load_tagger()
    table, digest = manifest.read_hashed(dataset.samples_manifest, manifest.SAMPLES, "tag-eval")
    rows = [row for row in table.to_pylist() if row["rain_type_source"] == "manual"]
    if not rows:
        raise DatasetError(
            f"{path} has no manual labels: label captures with rainbench label and "
            "rainbench tag --labels first"
        )
    # Judged as `rainbench tag` tags them: a capture that tag measures again is unmeasured.
    judged = [(row, features) for row in rows if (features := stored_features(row)) is not None]
    values = np.array(
        [[features[name] for name in FEATURE_NAMES] for _, features in judged], dtype=float
    ).reshape(len(judged), len(FEATURE_NAMES))
    found = _agreement(tagger, [row for row, _ in judged], values, len(rows) - len(judged))
    return replace(found, manifest_sha256=digest)


def _agreement(
    tagger: Tagger, rows: list[dict], features: np.ndarray, unmeasured: int
) -> LabelAgreement:
    p = tagger.probabilities(features) if len(rows) else np.zeros((0, len(RAIN_TYPES) + 1))
    distance = tagger.distance(features) if len(rows) else np.zeros(0)
    made = decide_all(
        tagger,
        p,
        distance,
        [dict(zip(FEATURE_NAMES, values, strict=True)) for values in features],
        [row["rain_type"] for row in rows],  # None: labelled clean, no rain visible
        [row["height"] for row in rows],
    )
    labels = {name: int(made.confusion[i].sum()) for i, name in enumerate(RAIN_TYPES)}
    labels["clean"] = len(made.clean_flags)
    f1, macro_f1 = f1_scores(made.confusion, labelled_only=True)
    fit = tagger.calibration.get("fit")
    return LabelAgreement(
        tagger=tagger.version,
        # A fit that kept the shipped weights learnt nothing from the labels.
        fitted_to_these=isinstance(fit, dict) and fit.get("penalty") is not None,
        fitted_on=sum(fit["labels"].values())
        if isinstance(fit, dict) and isinstance(fit.get("labels"), dict)
        else None,
        labels=labels,
        confusion=made.confusion.tolist(),
        f1=f1,
        macro_f1=macro_f1 if made.right.size else None,
        accuracy=round(float(np.mean(made.right)), 4) if made.right.size else None,
        calibration_error=calibration_error(made.confidence, made.right)
        if made.confidence.size
        else None,
        rain_flagged=_share(made.rain_flags),
        clean_flagged=_share(made.clean_flags),
        unlike=int(made.unlike.sum()),
        unmeasured=unmeasured,
    )


def _share(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 4) if flags.size else None
