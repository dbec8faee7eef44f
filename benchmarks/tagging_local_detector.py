"""A small convolutional rain detector against the shipped one, on rain no fit saw.

Whether a network learned from rendered rain detects rain of a model it never saw
better than the shipped detector's features, and what it costs.

    python benchmarks/tagging_local_detector.py --cache /tmp/local
    (≈ 20 min on 2 cores; the cache keeps the renders for the next run)
    python benchmarks/tagging_local_detector.py --cache /tmp/local --networks 3
    (an ensemble of three networks per fold beside the first of them alone)

Leave-one-rain-model-out, in benchmarks/tagging_robustness.py's folds (a rain model held
out with a third of the backgrounds). In each fold two detectors learn from the same
examples, the other rain models' and clean captures on the other backgrounds: the
shipped tagger's kind of detector (its logistic regression on the thin-line and
orientation features, as tagging_robustness fits it), and a network of four
convolutions (8 channels, 5×5 then dilated 3×3) over the preview's own luma (as the
`thin_*` features see it, ≤ 512 rows), taught on random crops of them. Both judge the
held-out model's rain and the held-out backgrounds' clean captures (with `--networks
K`, K networks too, their mean logit), and so do two candidates made of two of them:
the network(s) where a capture looks like day, the shipped detector where the tagger
would give it the `night` caveat; and whichever of the two is surer of rain, with no
test for night. Prints Markdown: the share of rain flagged at 5 % and
10 % of those clean captures flagged, per held-out model, worst and mean; at 10 %, day
and night rain apart; how well the caveat finds night; and the CPU time per capture of
the features and of the network(s), on one thread, in the same run. Needs torch (the
`eval` extra). A measurement: the tagger uses nothing from here.
"""

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from bench import add_example_arguments, log  # benchmarks/ is on sys.path when run as a script
from PIL import Image
from scipy import ndimage

from rainbench.parallel import WorkerPool
from rainbench.seeds import seed_from
from rainbench.tagging.features import FEATURES_VERSION
from rainbench.tagging.measure import compute_features, native_luma
from rainbench.tagging.tagger import CLASSES, load_tagger, looks_night
from rainbench.train.tagger import (
    BACKGROUNDS,
    CHECK_MODELS,
    DETECTION_BUDGETS,
    Example,
    HeldOut,
    Measured,
    decoded_example,
    detection,
    examples,
    fold_split,
    leave_one_model_out,
    model_folds,
)

CHANNELS = 8
CROP = 64  # px square: the training crops, cut anywhere in a render
STEPS = 300
BATCH = 16  # rainy crops per step, and as many clean ones
LEARNING_RATE = 3e-3
COST_CAPTURES = 24  # captures rendered again to time the features against the network


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_example_arguments(parser, seed=1, features_file=False)
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep each rendered example's luma and features in this folder, or reuse them "
        "(same code only: delete it after changing a renderer)",
    )
    parser.add_argument(
        "--teach-seed", type=int, default=0, help="seeds the networks' weights and crops"
    )
    parser.add_argument(
        "--networks",
        type=int,
        default=1,
        metavar="K",
        help="an ensemble: K networks per fold, each taught with its own seed, their mean "
        "logit P(rain) (the first network is the one K=1 teaches)",
    )
    args = parser.parse_args()
    # torch is imported where the network runs, so the render workers never load it.
    import torch

    torch.set_num_threads(1)  # the features' numpy runs on one thread too
    measured, luma = rendered(args.per_cell, args.seed, args.workers, args.cache)
    settings = load_tagger().calibration
    shipped_held = leave_one_model_out(measured, settings["l2"], settings["products"], True)
    shipped = detection(shipped_held)
    held = network_held_out(measured, luma, args.teach_seed, args.networks)
    columns = {"shipped detector": shipped_held, "network": held[0]}
    if args.networks > 1:
        columns[f"{args.networks} networks"] = held[1]
    # The candidate from the day-and-night table: the learned detector by day only.
    networks = list(columns)[-1]
    columns[f"{networks} by day, shipped at night"] = by_light(held[-1], shipped_held)
    # The second candidate, named before seeds 6 and 7 were rendered: no test for night.
    columns[f"{networks} or shipped"] = either(held[-1], shipped_held)
    learned = {name: detection(each) for name, each in list(columns.items())[1:]}
    print(
        f"{len(measured)} examples, seed {args.seed}; networks taught with seed "
        f"{args.teach_seed}, {args.networks} per fold\n"
    )
    print("\n".join(detection_table(shipped, learned)))
    print("\n" + "\n".join(light_table(columns)))
    print("\n" + caveat_line(measured))
    every = examples(tuple(BACKGROUNDS), 1, args.seed)
    todo = every[:: len(every) // COST_CAPTURES][:COST_CAPTURES]
    features_ms, network_ms = cost(todo, args.networks)
    print(
        f"\nCPU per capture, one thread, {COST_CAPTURES} captures: the features "
        f"{features_ms:.1f} ms, {args.networks} network(s) {network_ms:.1f} ms "
        f"({network_ms / features_ms:.2f}× the features)"
    )
    return 0


def rendered(
    per_cell: int, seed: int, workers: int, cache: Path | None
) -> tuple[list[Measured], dict[Example, np.ndarray]]:
    """Every rain model's and clean example of `seed`, measured, with the luma the
    network reads (8-bit), from `cache` where it holds them."""
    todo = examples(tuple(BACKGROUNDS), per_cell, seed)
    todo += examples(tuple(BACKGROUNDS), per_cell, seed, CHECK_MODELS, clean=False)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    started, done = time.perf_counter(), []
    with WorkerPool(workers) as pool:
        for count, item in enumerate(pool.map_ordered(_render, [(e, cache) for e in todo])):
            done.append(item)
            if count % 100 == 99:
                seconds = time.perf_counter() - started
                log(f"seed {seed}: {count + 1}/{len(todo)} in {seconds:.0f} s")
    return [m for m, _ in done], {m.example: luma for m, luma in done}


def _render(task: tuple[Example, Path | None]) -> tuple[Measured, np.ndarray]:
    example, cache = task
    name = hashlib.sha256(json.dumps(asdict(example)).encode()).hexdigest()[:24]
    kept = None if cache is None else cache / f"{name}.json"
    if kept is not None and kept.exists():
        item = json.loads(kept.read_text())
        if item.get("features_version") == FEATURES_VERSION:
            luma = np.asarray(Image.open(cache / f"{name}.png"))
            return Measured(example, item["features"], item["height"]), luma
    decoded = decoded_example(example)
    measured = Measured(example, compute_features(decoded.preview), decoded.height)
    luma = np.round(native_luma(decoded.preview) * 255).astype(np.uint8)
    if kept is not None:
        Image.fromarray(luma).save(cache / f"{name}.png")
        item = {"features_version": FEATURES_VERSION, **asdict(measured)}
        # The JSON last, whole or not at all: it says the picture beside it is complete.
        kept.with_suffix(".part").write_text(json.dumps(item))
        kept.with_suffix(".part").replace(kept)
    return measured, luma


def network_inputs(luma: np.ndarray) -> np.ndarray:
    """The network's two channels: the luma's high-pass residual in units of its own
    typical size (so exposure and gain do not move it), and the luma itself (rain shows
    against dark ground)."""
    pixels = luma.astype(np.float32) / 255
    residual = pixels - ndimage.uniform_filter(pixels, 5)
    scale = 1.4826 * float(np.median(np.abs(residual))) + 2e-3
    return np.stack([residual / scale, pixels])


def network():
    from torch import nn

    dilated = [
        layer
        for dilation in (2, 4)
        for layer in (
            nn.Conv2d(CHANNELS, CHANNELS, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
        )
    ]
    return nn.Sequential(
        nn.Conv2d(2, CHANNELS, 5, padding=2), nn.ReLU(), *dilated, nn.Conv2d(CHANNELS, 1, 1)
    )


def taught_network(inputs: list[np.ndarray], rainy: np.ndarray, seed: int):
    """A network whose mean pixel logit says rain, taught on crops of `inputs`."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = network()
    optimiser = torch.optim.Adam(net.parameters(), LEARNING_RATE)
    rain, clean = np.flatnonzero(rainy), np.flatnonzero(~rainy)
    target = torch.tensor([1.0] * BATCH + [0.0] * BATCH)
    for _ in range(STEPS):
        picked = np.concatenate([rng.choice(rain, BATCH), rng.choice(clean, BATCH)])
        crops = torch.from_numpy(np.stack([_crop(inputs[i], rng) for i in picked]))
        logits = net(crops).mean(dim=(1, 2, 3))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net


def _crop(channels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    short = [(0, 0)] + [(0, max(0, CROP - n)) for n in channels.shape[1:]]
    channels = np.pad(channels, short, mode="reflect")
    top = rng.integers(0, channels.shape[1] - CROP + 1)
    left = rng.integers(0, channels.shape[2] - CROP + 1)
    crop = channels[:, top : top + CROP, left : left + CROP]
    return np.ascontiguousarray(crop[:, :, ::-1] if rng.random() < 0.5 else crop)


def rain_logit(net, inputs: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float(net(torch.from_numpy(inputs)[None]).mean())


def network_held_out(
    measured: list[Measured], luma: dict[Example, np.ndarray], seed: int = 0, networks: int = 1
) -> list[HeldOut]:
    """Every fold's held-out examples with P(rain) from networks taught on what the
    fold's fits learn from: the first network's alone, and with `networks` > 1 their
    ensemble's (the mean logit) after it."""
    rows, group, logits = [], [], []
    for number, (backgrounds, model) in enumerate(model_folds(measured)):
        started = time.perf_counter()
        seen, mine = fold_split(measured, backgrounds, model)
        # Made again in every fold (≈ 3 s of its ≈ 25): every example's inputs kept at
        # once would take ≈ 2.4 GB at 1344 examples, their 8-bit luma 0.3 GB.
        inputs = [network_inputs(luma[m.example]) for m in seen]
        rainy = np.array([m.example.label != "clean" for m in seen])
        # The first network's seed is the one a single network is taught with.
        seeds = [
            seed_from("local detector", seed, number, *([k] if k else [])) for k in range(networks)
        ]
        nets = [taught_network(inputs, rainy, each) for each in seeds]
        rows += mine
        group += [model] * len(mine)
        for m in mine:
            held = network_inputs(luma[m.example])
            logits.append([rain_logit(net, held) for net in nets])
        log(f"{model}, backgrounds {backgrounds}: {time.perf_counter() - started:.0f} s")
    logits = np.array(logits)
    chosen = [logits[:, 0]] + ([logits.mean(axis=1)] if networks > 1 else [])
    count = len(rows)
    return [
        HeldOut(rows, np.zeros((count, len(CLASSES))), np.zeros(count), group, 1 / (1 + np.exp(-z)))
        for z in chosen
    ]


def detection_table(shipped: dict, learned: dict[str, dict]) -> list[str]:
    """Markdown: the shipped detector's detection beside each of `learned`'s, named by
    its keys."""
    head = " / ".join(f"{b:.0%}" for b in DETECTION_BUDGETS)
    columns = {"shipped detector": shipped, **learned}
    lines = [
        f"| rain model held out (rain flagged at {head} of clean flagged) | "
        + " | ".join(columns)
        + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    models = list(next(iter(learned.values())))
    for model in models:
        lines.append(
            f"| {model} | " + " | ".join(_shares(d[model]) for d in columns.values()) + " |"
        )
    for name, pick in (("worst", min), ("mean", lambda v: sum(v) / len(v))):
        cells = [
            " / ".join(f"{pick([d[m][b] for m in models]):.1%}" for b in DETECTION_BUDGETS)
            for d in columns.values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def light_table(columns: dict[str, HeldOut], budget: float = 0.10) -> list[str]:
    """Markdown: each detector's rain flagged at `budget` of clean flagged (the level set
    per held-out rain model on all its clean captures, as in detection(), whose shares
    are rounded: these are not, so the table rounds once), day and night rain apart: the
    worst and the mean over the held-out models."""
    lines = [
        f"| rain flagged at {budget:.0%} of clean flagged | "
        + " | ".join(f"{name}, worst / mean" for name in columns)
        + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for light in ("day", "night"):
        cells = []
        for held in columns.values():
            rain = held.rain_probability()
            clean = np.array([m.example.model is None for m in held.measured])
            lit = np.array([m.example.night == (light == "night") for m in held.measured])
            shares = []
            for group in dict.fromkeys(held.group):
                mine = np.array([g == group for g in held.group])
                level = np.quantile(rain[mine & clean], 1 - budget)
                shares.append(float(np.mean(rain[mine & ~clean & lit] > level)))
            cells.append(f"{min(shares):.1%} / {np.mean(shares):.1%}")
        lines.append(f"| {light} rain | " + " | ".join(cells) + " |")
    return lines


def by_light(day: HeldOut, night: HeldOut) -> HeldOut:
    """One detector made of two over the same rows: `night`'s P(rain) where the tagger
    would give a capture its `night` caveat (by the features' brightness, not by how it
    was rendered), `day`'s elsewhere. The two speak different scales, so each P(rain)
    becomes first its rank among its own fold's clean captures (the share of them below
    it, kept inside (0, 1)): a level set on the clean captures then means the same for
    both."""
    dark = np.array([looks_night(m.features) for m in day.measured])
    return _combined(day, np.where(dark, _clean_ranks(night), _clean_ranks(day)), night)


def either(first: HeldOut, second: HeldOut) -> HeldOut:
    """One detector made of two over the same rows, with no test for night: the larger of
    their P(rain), each first made its rank among its own fold's clean captures (as in
    by_light()). At a level set on the clean captures it flags what either flags at its
    own level, the two levels set so that together they flag that share of clean."""
    return _combined(first, np.maximum(_clean_ranks(first), _clean_ranks(second)), second)


def _combined(one: HeldOut, rain: np.ndarray, other: HeldOut) -> HeldOut:
    """A detector of P(rain) `rain` over the rows of `one` and `other` (the same)."""
    assert [m.example for m in one.measured] == [m.example for m in other.measured]
    assert one.group == other.group
    count = len(rain)
    return HeldOut(one.measured, np.zeros((count, len(CLASSES))), np.zeros(count), one.group, rain)


def _clean_ranks(held: HeldOut) -> np.ndarray:
    rain = held.rain_probability()
    clean = np.array([m.example.model is None for m in held.measured])
    ranks = np.empty(len(rain))
    for group in dict.fromkeys(held.group):
        mine = np.array([g == group for g in held.group])
        levels = np.sort(rain[mine & clean])
        ranks[mine] = (np.searchsorted(levels, rain[mine]) + 0.5) / (len(levels) + 1)
    return ranks


def caveat_line(measured: list[Measured]) -> str:
    """How often the `night` caveat, which by_light() goes by, matches the light each
    capture was rendered in; at night, per label too (a veil lifts the mean luma)."""
    dark = np.array([looks_night(m.features) for m in measured])
    night = np.array([m.example.night for m in measured])
    labels = np.array([m.example.label for m in measured])
    kinds = ", ".join(
        f"{label} {(dark & night & (labels == label)).sum()} of {(night & (labels == label)).sum()}"
        for label in CLASSES
    )
    return (
        f"The night caveat: {(dark & night).sum()} of {night.sum()} captures rendered at night "
        f"({kinds}), {(dark & ~night).sum()} of {(~night).sum()} rendered by day."
    )


def _shares(found: dict[float, float]) -> str:
    return " / ".join(f"{found[b]:.1%}" for b in DETECTION_BUDGETS)


def cost(todo: list[Example], networks: int = 1) -> tuple[float, float]:
    """Milliseconds of CPU per capture: the features on the preview, and `networks`
    networks on the preview's luma (their inputs made once, included), each as taught
    but untrained (the weights do not change the work)."""
    nets = [network() for _ in range(networks)]
    features = network_time = 0.0
    for example in todo:
        preview = decoded_example(example).preview
        started = time.process_time()
        compute_features(preview)
        features += time.process_time() - started
        started = time.process_time()
        inputs = network_inputs(np.round(native_luma(preview) * 255).astype(np.uint8))
        for net in nets:
            rain_logit(net, inputs)
        network_time += time.process_time() - started
    return features * 1e3 / len(todo), network_time * 1e3 / len(todo)


if __name__ == "__main__":
    raise SystemExit(main())
