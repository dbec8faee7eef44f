"""Are a rain video's dry frames found, and is a rainy frame ever taken for dry?

    OMP_NUM_THREADS=1 python benchmarks/pairs_rain_free.py      # ≈ 3 min on 2 cores

Tripod rain videos (`rainbench.synth.video.render_rain_video`: a still shaken within
±1.5 px, a person crossing, one recipe's rain new every frame) over scikit-image's sample
photographs and the demo's procedural street, through H.264 (libx264, yuv420p), at four
sizes, three CRFs, by day and at night, with dry frames before the rain, after it, at
both ends or none, and videos whose rain changes (one recipe, then another) or fades in
(dry, then a few frames of the rain at a quarter of its strength, then the rain).
`rainbench.pairs.estimate.find_rain_free` with its defaults is asked for the dry frames
of each; per video: how many are dry, found, missed and wrongly found (a rainy frame
taken for dry: the worse error, as it makes a rainy ground truth). The detector's
constants were chosen on other renders of most of these kinds (other seeds, crops and
lengths); these videos were first run once it was written. The frames a codec's
B-frames predict from the first rainy frame can carry some of its rain, so the last dry
frames before the rain may be missed, which is the safe side.
"""

import argparse
import time
from dataclasses import dataclass

import numpy as np

from rainbench.demo.captures import render_scene
from rainbench.demo.photos import framed_photo
from rainbench.pairs.estimate import ArrayFrames, EstimateOptions, find_rain_free


@dataclass(frozen=True)
class Video:
    name: str
    still: str  # a scikit-image sample photograph, or "street"
    recipe: str
    width: int
    height: int
    crf: int
    lead: int = 0  # dry frames before the rain
    tail: int = 0  # dry frames after it
    then: str | None = None  # a second recipe for the video's second half: no dry frame
    faint: int = 0  # frames of rain at a quarter of its strength after the dry lead
    night: bool = False
    frames: int = 32
    seed: int = 1


VIDEOS = (
    Video("lead8-drizzle-astronaut", "astronaut.png", "drizzle", 480, 272, 20, lead=8),
    Video("lead8-drizzle-coffee", "coffee.png", "drizzle", 480, 272, 20, lead=8, seed=2),
    Video("lead9-drizzle-chelsea", "chelsea.png", "drizzle", 480, 272, 20, lead=9, seed=3),
    Video("lead9-streak-astronaut", "astronaut.png", "streak", 480, 272, 20, lead=9, seed=4),
    Video("lead8-streak-coffee", "coffee.png", "streak", 480, 272, 23, lead=8, seed=5),
    Video("lead6-drizzle-rocket", "rocket.jpg", "drizzle", 640, 360, 28, lead=6, seed=6),
    Video("tail8-drizzle-street", "street", "drizzle", 640, 360, 23, tail=8, seed=7),
    Video("lead9-storm-chelsea", "chelsea.png", "storm", 640, 360, 18, lead=9, seed=8),
    Video("lead8-fog-astronaut", "astronaut.png", "fog-like", 480, 272, 23, lead=8, seed=9),
    Video("tail6-storm-coffee", "coffee.png", "storm", 320, 180, 28, tail=6, seed=10),
    Video("both5-fog-rocket", "rocket.jpg", "fog-like", 320, 180, 18, lead=5, tail=5, seed=11),
    Video("lead8-streak-street", "street", "streak", 320, 180, 28, lead=8, seed=12),
    Video("lead8-drizzle-720p", "astronaut.png", "drizzle", 1280, 720, 23, lead=8, frames=24),
    Video("lead4-drizzle-chelsea", "chelsea.png", "drizzle", 320, 180, 28, lead=4, seed=14),
    Video("lead8-drizzle-night", "street", "drizzle", 640, 360, 23, lead=8, night=True),
    Video("all-drizzle-astronaut", "astronaut.png", "drizzle", 480, 272, 20, seed=15),
    Video("all-streak-coffee", "coffee.png", "streak", 480, 272, 28, seed=16),
    Video("all-storm-street", "street", "storm", 640, 360, 23, seed=17),
    Video("all-fog-chelsea", "chelsea.png", "fog-like", 320, 180, 18, seed=18),
    Video("all-drizzle-rocket", "rocket.jpg", "drizzle", 320, 180, 18, seed=19),
    Video("all-streak-night", "coffee.png", "streak", 640, 360, 28, night=True, seed=20),
    Video("drizzle-then-streak", "coffee.png", "drizzle", 480, 272, 20, then="streak", seed=21),
    Video("drizzle-then-storm", "astronaut.png", "drizzle", 480, 272, 23, then="storm", seed=22),
    Video("drizzle-then-fog", "street", "drizzle", 640, 360, 23, then="fog-like", seed=23),
    Video("lead6-faint4-drizzle", "chelsea.png", "drizzle", 640, 360, 23, lead=6, faint=4),
    Video("lead6-faint4-streak", "rocket.jpg", "streak", 480, 272, 28, lead=6, faint=4),
    Video("faint8-then-storm", "astronaut.png", "storm", 480, 272, 23, faint=8, seed=24),
)


def still_of(video: Video) -> np.ndarray:
    if video.still == "street":
        return render_scene(video.width, video.height, video.seed)
    aspect = video.width / video.height
    return np.asarray(framed_photo(video.still, video.width, aspect=aspect))


def render(video: Video) -> tuple[list[np.ndarray], set[int]]:
    """The video's frames, uint8 RGB, and which of them are dry."""
    from rainbench.synth.video import render_rain_video

    still = still_of(video)
    kwargs = {"night": video.night}

    def rendered(recipe: str, seed: int, dry: int = 0, tail: int = 0):
        return render_rain_video(
            still, recipe, video.frames, seed, rain_free_lead=dry, rain_free_tail=tail, **kwargs
        )

    if video.then:  # rain that changes: the first half in one recipe, then another
        half = video.frames // 2
        first = rendered(video.recipe, video.seed).frames[:half]
        return first + rendered(video.then, video.seed + 100).frames[half:], set()
    if video.faint:  # dry, then rain fading in at a quarter of its strength, then rain
        clear = rendered(video.recipe, video.seed, dry=video.frames).frames
        rainy = rendered(video.recipe, video.seed).frames
        frames = []
        for index, (dry, wet) in enumerate(zip(clear, rainy, strict=True)):
            if index < video.lead:
                frames.append(dry)
            elif index < video.lead + video.faint:
                mixed = dry + 0.25 * (wet.astype(np.float32) - dry)
                frames.append(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
            else:
                frames.append(wet)
        return frames, set(range(video.lead))
    shown = rendered(video.recipe, video.seed, video.lead, video.tail)
    return shown.frames, set(shown.rain_free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="*", default=None, help="only these, by name")
    args = parser.parse_args()
    from rainbench.synth.video import decode_video, encode_h264

    options = EstimateOptions()
    chosen = [v for v in VIDEOS if not args.videos or v.name in args.videos]
    print("| video | recipe | size | CRF | frames | dry | found | missed | taken for dry |")
    print("|---|---|---|---|---|---|---|---|---|")
    missed_all = wrong_all = dry_all = 0
    started = time.perf_counter()
    for video in chosen:
        frames, dry = render(video)
        decoded = ArrayFrames(decode_video(encode_h264(frames, crf=video.crf)))
        found = set(find_rain_free(decoded, options))
        missed, wrong = dry - found, found - dry
        missed_all, wrong_all, dry_all = (
            missed_all + len(missed),
            wrong_all + len(wrong),
            dry_all + len(dry),
        )
        recipe = f"{video.recipe}, then {video.then}" if video.then else video.recipe
        night = " night" if video.night else ""
        print(
            f"| {video.name} | {recipe} | {video.width}×{video.height}{night} | {video.crf} "
            f"| {len(frames)} | {len(dry)} | {len(found & dry)} | "
            f"{len(missed)} {sorted(missed) if missed else ''} | "
            f"{len(wrong)} {sorted(wrong) if wrong else ''} |",
            flush=True,
        )
    print(
        f"\n{dry_all} dry frames in {len(chosen)} videos: {missed_all} missed, "
        f"{wrong_all} rainy frames taken for dry; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
