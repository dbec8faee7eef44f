"""The learned rain detector, taught once on every calibration example, to try on your
own photographs beside the shipped one.

    python benchmarks/network_detector.py teach --cache /tmp/local --judge-seeds 1 2 3
        (≈ 10 min on 2 cores with the renders cached, ≈ 12 min more for each seed's
        renders; writes benchmarks/results/network-detector.json and judges it on fresh
        rain of the model no calibration saw)
    python benchmarks/network_detector.py check --cache /tmp/local --judge-seeds 1 2 3
        (the same judgement of the file as it is)
    python benchmarks/network_detector.py judge DS [DS ...] [--csv flags.csv]
        (both detectors on every capture of your datasets, each at its own threshold)

`teach`: three networks of benchmarks/tagging_local_detector.py (its architecture, its
inputs, its teaching), taught on the examples tagger 5 was calibrated on (`--seed 0`:
the four calibration rain models and the clean captures, every background); their mean
pixel logit map pooled into one logit (its mean, or the mean of its highest 5 %: rain
lit in a small part of a night scene), read as P(rain) through a logistic scaling, and
a flag threshold. The pooling, scaling and threshold are settled, as the tagger's
settings are, on decisions about backgrounds the networks that made them never saw
(three folds of backgrounds, three networks each): the pooling whose worst acquisition
condition has the most rain flagged. The file holds the weights, those settings and how
they were made. Then (and with `check`, for the file as it is) fresh examples
(`--judge-seeds`) of the `particles` rain model, which no calibration uses, and fresh
clean captures are judged by it, by the shipped tagger's detector, by the two taken
by light and by either of them (as `judge` below takes them): the share flagged at each
one's threshold, and at 5 % and 10 % of the clean captures flagged, per seed; and by
acquisition condition (size, JPEG, night, noise, sharpening, tone). The clean captures
are new renders of the calibration's backgrounds, so their flags are a floor, not what
your photographs will give.

`judge`: every capture of each dataset (a video by its middle frame, as ingest measures
it) decoded again at preview scale; P(rain) from the dataset's tagger (its detector, on
the features) and from the network file; per dataset and layer, how many each flags at
its own threshold, and how many each of two candidates made of the two flags: the
networks' flag where the tagger would not give the capture its `night` caveat, the
tagger's where it would; and either's flag. Ingest your rainy photographs and your
clean ones (`--layer clean` or not: both detectors judge every capture) and compare.
Needs torch (the `eval` extra). A measurement: the tagger uses nothing from here.
"""

import argparse
import hashlib
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from bench import add_example_arguments, log  # benchmarks/ is on sys.path when run as a script
from tagging_local_detector import (
    BATCH,
    CHANNELS,
    CROP,
    LEARNING_RATE,
    STEPS,
    network,
    network_inputs,
    rendered,
    taught_network,
)

from rainbench.ingest.tag import Stale, previews
from rainbench.parallel import WorkerPool
from rainbench.seeds import seed_from
from rainbench.shards.dataset import open_dataset
from rainbench.shards.fitted import active_tagger
from rainbench.shards.manifest import SAMPLES, read_manifest
from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import load_tagger, looks_night
from rainbench.train.tagger import (
    CHECK_MODELS,
    DETECTION_BUDGETS,
    RAIN_MODELS,
    Measured,
    calibration_examples,
    condition_masks,
    feature_matrix,
    fit_scale,
    flag_threshold,
    fold_split,
    rescaled,
)

DEFAULT_OUT = Path(__file__).parent / "results" / "network-detector.json"
VERSION = "net-1"
NETWORKS = 3
PART = 16  # captures a worker judges at a time
# How a picture's pixel logits become one: their mean, as the networks were taught, or
# the mean of the highest TOP share of them, for rain that shows in a small part of the
# picture (where it is lit, at night).
TOP = 0.05
POOLINGS = ("mean", f"top {TOP:.0%}")
FOLDS = 3  # thirds of the backgrounds, each judged by networks taught on the others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    teach = commands.add_parser("teach", help="teach the networks and write their file")
    add_example_arguments(teach, seed=0, features_file=False)
    teach.add_argument("--out", type=Path, default=DEFAULT_OUT)
    check = commands.add_parser("check", help="judge a network file on fresh examples")
    check.add_argument("--per-cell", type=int, default=4, help="as the examples were made")
    check.add_argument("-j", "--workers", type=int, default=2)
    check.add_argument("--detector", type=Path, default=DEFAULT_OUT, help="the network file")
    for command in (teach, check):
        command.add_argument(
            "--cache", type=Path, help="the renders, as tagging_local_detector keeps them"
        )
        command.add_argument(
            "--judge-seeds", type=int, nargs="+", default=[1], help="seeds of the fresh examples"
        )
    judge = commands.add_parser("judge", help="both detectors on every capture of datasets")
    judge.add_argument("datasets", nargs="+", help="dataset folders (or store URLs)")
    judge.add_argument("--detector", type=Path, default=DEFAULT_OUT, help="the network file")
    judge.add_argument("--csv", type=Path, help="write every capture's two P(rain) here")
    judge.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    # torch is imported where the networks run, so the render workers never load it.
    import torch

    torch.set_num_threads(1)
    if args.command == "teach":
        return teach_and_check(args)
    if args.command == "check":
        print("\n".join(checked(_read_detector(args.detector), args)))
        return 0
    return judge_datasets(args)


def teach_and_check(args: argparse.Namespace) -> int:
    measured, luma = rendered(args.per_cell, args.seed, args.workers, args.cache)
    measured = calibration_examples(measured)
    detector = taught_detector(measured, luma, args.seed)
    detector["calibration"].update(
        command=f"python benchmarks/network_detector.py teach --per-cell {args.per_cell} "
        f"--seed {args.seed}",
        per_cell=args.per_cell,
        luma_sha256=_luma_digest(measured, luma),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(detector, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out}")
    print("\n".join(checked(detector, args)))
    return 0


def checked(detector: dict, args: argparse.Namespace) -> list[str]:
    """Markdown: the network file, the shipped tagger's detector and the two taken by
    light on fresh examples of each of `args.judge_seeds`, and by acquisition condition
    over all of them."""
    nets = networks_of(detector)
    tagger = load_tagger()
    chosen, seeds, shipped, learned = [], [], [], []
    for seed in args.judge_seeds:
        fresh, luma = rendered(args.per_cell, seed, args.workers, args.cache)
        mine = [m for m in fresh if m.example.model in (*CHECK_MODELS, None)]
        chosen += mine
        seeds += [seed] * len(mine)
        shipped.append(1 - tagger.probabilities(feature_matrix(mine))[:, 0])
        learned += [network_probability(detector, nets, luma[m.example]) for m in mine]
    shipped, learned = np.concatenate(shipped), np.array(learned)
    # The candidates judge flags: each detector's P(rain) as its margin over its own
    # threshold, the networks' by day and the tagger's where it would say `night`, or
    # the larger of the two.
    night = np.array([looks_night(m.features) for m in chosen])
    tagged, found = shipped - tagger.flag_threshold, learned - detector["flag_threshold"]
    judged = {
        f"tagger {tagger.version}": (shipped, tagger.flag_threshold),
        f"networks ({detector['version']})": (learned, detector["flag_threshold"]),
        "networks by day, tagger at night (P(rain) − its threshold)": (
            np.where(night, tagged, found),
            0.0,
        ),
        "networks or tagger (the larger P(rain) − its threshold)": (np.maximum(tagged, found), 0.0),
    }
    clean = np.array([m.example.model is None for m in chosen])
    return [
        f"Fresh examples of seeds {', '.join(map(str, args.judge_seeds))}: "
        f"{int((~clean).sum())} of {', '.join(CHECK_MODELS)} rain (no calibration saw it), "
        f"{int(clean.sum())} clean (new renders of the calibration's backgrounds)\n",
        *_by_seed(judged, clean, np.array(seeds)),
        "",
        "By acquisition condition, every seed together: rain flagged / clean flagged at each "
        "detector's own threshold\n",
        *_by_condition(judged, clean, chosen),
    ]


def _by_seed(judged: dict, clean: np.ndarray, seeds: np.ndarray) -> list[str]:
    lines = [
        "| seed | detector | threshold | rain flagged | clean flagged | "
        + " | ".join(f"rain flagged at {b:.0%} clean flagged" for b in DETECTION_BUDGETS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(DETECTION_BUDGETS),
    ]
    for seed in dict.fromkeys(seeds.tolist()):
        mine = seeds == seed
        for name, (p, threshold) in judged.items():
            rain, dry = p[mine & ~clean], p[mine & clean]
            at = [np.mean(rain > np.quantile(dry, 1 - b)) for b in DETECTION_BUDGETS]
            lines.append(
                f"| {seed} | {name} | {threshold} | {np.mean(rain >= threshold):.1%} | "
                f"{np.mean(dry >= threshold):.1%} | " + " | ".join(f"{a:.1%}" for a in at) + " |"
            )
    return lines


def _by_condition(judged: dict, clean: np.ndarray, chosen: list[Measured]) -> list[str]:
    lines = [
        "| condition | " + " | ".join(judged) + " | rainy examples |",
        "|---|" + "---|" * (len(judged) + 1),
    ]
    worst = dict.fromkeys(judged, 1.0)
    for condition, rows in condition_masks(chosen).items():
        if not (rows & ~clean).any() or not (rows & clean).any():
            continue  # no example of this condition among those judged
        cells = []
        for name, (p, threshold) in judged.items():
            found = float(np.mean(p[rows & ~clean] >= threshold))
            worst[name] = min(worst[name], found)
            cells.append(f"{found:.1%} / {np.mean(p[rows & clean] >= threshold):.1%}")
        rainy = int((rows & ~clean).sum())
        lines.append(f"| {condition} | " + " | ".join(cells) + f" | {rainy} |")
    cells = " | ".join(f"{found:.1%}" for found in worst.values())
    return [*lines, f"| worst, rain flagged | {cells} | |"]


def _read_detector(path: Path) -> dict:
    if not path.is_file():
        sys.exit(
            f"{path}: no network file; make it with python benchmarks/network_detector.py teach"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def taught_detector(
    measured: list[Measured], luma: dict, seed: int, networks: int = NETWORKS
) -> dict:
    """The detector file's contents: `networks` networks taught on every example of
    `measured`, with a pooling, a scaling and a flag threshold settled on held-out
    decisions: the pooling whose worst acquisition condition finds the most rain."""
    backgrounds = sorted({m.example.background for m in measured})
    held, judged = {pooling: [] for pooling in POOLINGS}, []
    for fold in range(FOLDS):
        started = time.perf_counter()
        seen, mine = fold_split(measured, backgrounds[fold::FOLDS], None, checks=CHECK_MODELS)
        nets = _taught(
            seen, luma, [seed_from("network detector", seed, fold, k) for k in range(networks)]
        )
        for m in mine:
            for pooling, z in pooled_logits(nets, luma[m.example]).items():
                held[pooling].append(z)
        judged += mine
        log(f"fold {fold + 1}/{FOLDS}: {time.perf_counter() - started:.0f} s")
    settled = {pooling: _settled(np.array(z), judged) for pooling, z in held.items()}
    # Ties go to the mean, the pooling the networks were taught with.
    pooling = max(POOLINGS, key=lambda name: settled[name]["worst_rain_flagged"])
    teach_seeds = [seed_from("network detector", seed, "all", k) for k in range(networks)]
    nets = _taught(measured, luma, teach_seeds)
    return {
        "version": VERSION,
        "architecture": f"tagging_local_detector.network(): {CHANNELS} channels",
        "networks": [_weights(net) for net in nets],
        "pooling": pooling,
        "scale": settled[pooling]["scale"],
        "shift": settled[pooling]["shift"],
        "flag_threshold": settled[pooling]["flag_threshold"],
        "calibration": {
            "script": "benchmarks/network_detector.py",
            "seed": seed,
            "rain_models": list(RAIN_MODELS),
            "examples": len(measured),
            "teaching": {"steps": STEPS, "crop": CROP, "batch": 2 * BATCH, "lr": LEARNING_RATE},
            "teach_seeds": teach_seeds,
            "held_out": {
                "folds": f"{FOLDS} thirds of the backgrounds, every calibration rain model known",
                "pooling": "the one whose worst condition's rain flagged is highest",
                **settled,
            },
            "versions": {
                name: metadata.version(name) for name in ("torch", "numpy", "scipy", "pillow")
            },
        },
    }


def _taught(measured: list[Measured], luma: dict, seeds: list[int]) -> list:
    inputs = [network_inputs(luma[m.example]) for m in measured]
    rainy = np.array([m.example.label != "clean" for m in measured])
    return [taught_network(inputs, rainy, seed) for seed in seeds]


def pooled_logits(nets: list, luma: np.ndarray) -> dict[str, float]:
    """The networks' mean pixel logit map over 8-bit luma, pooled each way of POOLINGS."""
    import torch

    inputs = torch.from_numpy(network_inputs(luma))[None]
    with torch.no_grad():
        pixels = torch.stack([net(inputs) for net in nets]).mean(dim=0).flatten().numpy()
    count = max(1, round(TOP * pixels.size))
    highest = np.partition(pixels, -count)[-count:]
    return {"mean": float(pixels.mean()), POOLINGS[1]: float(highest.mean())}


def _settled(z: np.ndarray, judged: list[Measured]) -> dict:
    """Scaling and flag threshold from held-out logits `z` of `judged`, and what they
    flag: overall, and the rain of the worst acquisition condition."""
    truth = np.array([m.example.label != "clean" for m in judged])
    scale = fit_scale(_sigmoid(z), truth)
    p = rescaled(_sigmoid(z), scale)
    threshold = flag_threshold(p[~truth])
    flags = p >= threshold
    found = {
        name: float(np.mean(flags[truth & rows]))
        for name, rows in condition_masks(judged).items()
        if (truth & rows).any()
    }
    worst = min(found, key=found.get)
    return {
        "scale": scale[0],
        "shift": scale[1],
        "flag_threshold": threshold,
        "rain_flagged": round(float(flags[truth].mean()), 4),
        "clean_flagged": round(float(flags[~truth].mean()), 4),
        "worst_condition": worst,
        "worst_rain_flagged": round(found[worst], 4),
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _weights(net) -> dict[str, list]:
    """A network's weights as lists of floats that read back to the same float32s."""
    return {name: value.double().tolist() for name, value in net.state_dict().items()}


def judge_datasets(args: argparse.Namespace) -> int:
    detector = _read_detector(args.detector)
    judged = [row for place in args.datasets for row in _judged(place, detector, args.workers)]
    judged.sort(key=lambda row: (row["dataset"], row["key"]))
    if args.csv is not None:
        pd.DataFrame(judged).to_csv(args.csv, index=False)
    print("\n".join(flag_table(judged, detector)))
    return 0


def _judged(location: str, detector: dict, workers: int) -> list[dict]:
    """A row per capture of the dataset at `location`: its P(rain) from the dataset's
    tagger and from the networks, and whether each flags it."""
    dataset = open_dataset(location)
    rows = read_manifest(dataset.samples_manifest, SAMPLES).to_pylist()
    tagger = active_tagger(dataset)
    by_key = {row["key"]: row for row in rows}
    parts: dict[str, list[Stale]] = {}
    for row in rows:
        parts.setdefault(row["shard"], []).append(Stale.of(row))
    tasks = [
        (dataset.root, shard, members[start : start + PART], detector)
        for shard, members in sorted(parts.items())
        for start in range(0, len(members), PART)
    ]
    judged = []
    with WorkerPool(workers) as pool:
        for results in pool.map_unordered(_judge_part, tasks):
            for key, features, learned in results:
                row = by_key[key]
                tagged = None
                if features is not None:
                    values = np.array([[features[name] for name in FEATURE_NAMES]])
                    tagged = 1 - float(tagger.probabilities(values)[0, 0])
                flags = {
                    "flag_tagger": tagged is not None and tagged >= tagger.flag_threshold,
                    "flag_network": learned is not None and learned >= detector["flag_threshold"],
                }
                # The candidates of tagging_local_detector.py's by_light() (the networks
                # where the tagger sees day, the tagger where it would say `night`) and
                # either() (whichever flags).
                night = features is not None and looks_night(features)
                judged.append(
                    {
                        "dataset": location,
                        "key": key,
                        "layer": row["layer"],
                        "rain_type": row["rain_type"] or "",
                        "rain_type_source": row["rain_type_source"] or "",
                        "caveats": " ".join(row["tag_caveats"] or []),
                        "night": night,
                        "p_tagger": tagged,
                        "p_network": learned,
                        **flags,
                        "flag_by_light": flags["flag_tagger" if night else "flag_network"],
                        "flag_either": flags["flag_tagger"] or flags["flag_network"],
                    }
                )
    log(f"{location}: {len(rows)} captures judged (tagger {tagger.version})")
    return judged


def _judge_part(
    task: tuple[Path, str, list[Stale], dict],
) -> list[tuple[str, dict | None, float | None]]:
    import torch

    from rainbench.tagging.measure import compute_features, native_luma

    torch.set_num_threads(1)
    root, shard, members, detector = task
    nets = networks_of(detector)
    results = []
    for key, preview in previews(root, shard, members):
        if preview is None:
            results.append((key, None, None))
            continue
        luma = np.round(native_luma(preview) * 255).astype(np.uint8)
        results.append((key, compute_features(preview), network_probability(detector, nets, luma)))
    return results


def flag_table(judged: list[dict], detector: dict) -> list[str]:
    """Markdown: per dataset, layer and rain type (as labelled or tagged), how many
    captures each detector flags at its own threshold, the two of them taken by light, and
    either of them."""
    lines = [
        f"| dataset | layer | rain type | captures | its tagger flags | networks "
        f"({detector['version']}, threshold {detector['flag_threshold']}) flags | networks by "
        "day, its tagger at night | networks or its tagger | unreadable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for row in judged:
        groups.setdefault((row["dataset"], row["layer"], row["rain_type"]), []).append(row)
        groups.setdefault((row["dataset"], row["layer"], "all"), []).append(row)
    for (dataset, layer, rain_type), rows in sorted(groups.items()):
        read = [row for row in rows if row["p_network"] is not None]
        count = max(len(read), 1)
        cells = []
        for flag in ("flag_tagger", "flag_network", "flag_by_light", "flag_either"):
            flagged = sum(row[flag] for row in read)
            cells.append(f"{flagged} ({flagged / count:.0%})")
        lines.append(
            f"| {dataset} | {layer} | {rain_type or 'none'} | {len(read)} | "
            + " | ".join(cells)
            + f" | {len(rows) - len(read)} |"
        )
    return lines


def networks_of(detector: dict) -> list:
    """The detector file's networks, ready to judge."""
    import torch

    nets = []
    for weights in detector["networks"]:
        net = network()
        tensors = {
            name: torch.tensor(value, dtype=torch.float32) for name, value in weights.items()
        }
        net.load_state_dict(tensors)
        nets.append(net.eval())
    return nets


def network_probability(detector: dict, nets: list, luma: np.ndarray) -> float:
    """P(rain) of 8-bit preview luma, as the file's settings read the networks."""
    z = pooled_logits(nets, luma)[detector["pooling"]]
    return float(rescaled(np.array([_sigmoid(z)]), (detector["scale"], detector["shift"]))[0])


def _luma_digest(measured: list[Measured], luma: dict) -> str:
    digest = hashlib.sha256()
    for m in measured:
        digest.update(np.ascontiguousarray(luma[m.example]).tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
