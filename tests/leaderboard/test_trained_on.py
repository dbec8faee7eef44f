"""A derainer scored on images it trained on: NLCL trained a step on split train, scored
on every split; eval counts each split's images that come from its training captures,
and the leaderboard shows those rows without ranking them. A checkpoint that does not
say what it learnt from is scored and ranked as before."""

import io
import json
from csv import DictReader

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard.eval import EvalSettings, _SplitRun
from rainbench.leaderboard.ranking import leaderboard_tables
from rainbench.leaderboard.results import load_results
from rainbench.leaderboard.sources import DerainerSource
from rainbench.models.registry import create_derainer
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train

TINY = NLCLConfig(
    steps=1, crop=48, channels=8, blocks=2, window=16, patch=8, positives=4, negatives=16,
    nce_layers=(0, 1, 2, 3), nce_locations=32, workers=0, checkpoint_every=1, validate_every=0,
)  # fmt: skip
SETTINGS = EvalSettings(metrics=("psnr_y", "piqe"), batch=2, crops=0)


@pytest.fixture(scope="module")
def _trained(tmp_path_factory):
    """Three rainy and three clean captures in train, two rainy ones moved to test (the
    manifest holds the splits), syn-streak rendered on the clean captures; NLCL trained
    a step on train."""
    root = tmp_path_factory.mktemp("trained-on")
    for folder, seed, count in (("rainy", 6, 5), ("clean", 12, 3)):
        for spec in sample_specs(count, seed=seed, size=(96, 64)):
            write_capture(root / folder, spec)
    ds = root / "ds"
    for layer in ("rainy", "clean"):
        ingest([root / layer], ds, IngestOptions(workers=1, layer=layer, split={"train": 1.0}))
    path = Dataset(ds).samples_manifest
    rows = manifest.read_manifest(path, manifest.SAMPLES).to_pylist()
    for row in [row for row in rows if row["layer"] == "rainy"][3:]:
        row["split"] = "test"
    manifest.write_manifest(path, pa.Table.from_pylist(rows, schema=manifest.SAMPLES))
    synthesize(ds, SynthOptions(recipes=("streak",), source_split="train", workers=1))
    train(ds, root / "run", TINY, threads=1)
    return ds, root / "run" / "nlcl.pt"


def _provenance(results, model, split) -> dict:
    return json.loads((results / model / "ds" / f"{split}.json").read_text())


def test_the_checkpoint_names_the_captures_it_trained_on(_trained):
    ds, checkpoint = _trained
    rows = pq.read_table(Dataset(ds).samples_manifest).to_pylist()
    state = torch.load(checkpoint, weights_only=True)
    for layer in ("rainy", "clean"):
        packed = state["trained_on"][layer]
        assert packed.dtype == torch.uint8 and tuple(packed.shape) == (3, 12)
        assert {bytes(row).hex() for row in packed.numpy()} == {
            row["key"] for row in rows if row["split"] == "train" and row["layer"] == layer
        }
    derainer = create_derainer("nlcl", checkpoint=checkpoint)
    assert len(derainer.trained_on) == 6


def test_rows_of_images_trained_on_are_shown_not_ranked(tmp_path, _trained):
    ds, checkpoint = _trained
    results = tmp_path / "res"
    scored = CliRunner().invoke(main, ["eval", str(ds), "--model", "nlcl", "--checkpoint",
                                       str(checkpoint), "--split", "all", "--results",
                                       str(results), "--metrics", "psnr_y,piqe"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert "nlcl on ds/train: trained on 3 of its 3 images — shown, not ranked" in scored.output
    assert "nlcl on ds/syn-streak: trained on 3 of its 3 images" in scored.output
    assert "ds/test: trained on" not in scored.output
    overlap = {split: _provenance(results, "nlcl", split)["trained_on"]
               for split in ("train", "test", "syn-streak")}  # fmt: skip
    assert overlap == {
        "train": {"images": 3, "of": 3},
        "test": {"images": 0, "of": 2},
        "syn-streak": {"images": 3, "of": 3},  # rendered on the clean captures trained on
    }
    identity = CliRunner().invoke(main, ["eval", str(ds), "--model", "identity", "--split",
                                         "all", "--results", str(results), "--metrics",
                                         "psnr_y,piqe"])  # fmt: skip
    assert identity.exit_code == 0, identity.output
    assert _provenance(results, "identity", "train")["trained_on"] is None
    tables = {table.split: table for table in leaderboard_tables(load_results(results))}
    ranks = {split: {row.model: (row.rank, row.unranked) for row in table.rows}
             for split, table in tables.items()}  # fmt: skip
    assert ranks["train"] == {
        "identity": (1, None), "nlcl": (None, "trained on 3 of its 3 images")
    }  # fmt: skip
    assert ranks["syn-streak"]["nlcl"] == (None, "trained on 3 of its 3 images")
    assert {rank for rank, _ in ranks["test"].values()} == {1, 2}  # both ranked
    for fmt in ("md", "html"):
        board = CliRunner().invoke(main, ["leaderboard", "--results", str(results),
                                          "--format", fmt])  # fmt: skip
        assert board.exit_code == 0, board.output
        assert "nlcl (trained on 3 of its 3 images)" in board.output
    csv = CliRunner().invoke(main, ["leaderboard", "--results", str(results), "--format", "csv"])
    rows = list(DictReader(io.StringIO(csv.output)))
    rank = {(row["split"], row["model"]) for row in rows if row["rank"]}
    assert ("train", "identity") in rank and ("train", "nlcl") not in rank
    assert ("test", "nlcl") in rank


def test_a_checkpoint_without_its_captures_is_scored_and_ranked_as_before(tmp_path, _trained):
    ds, checkpoint = _trained
    older = tmp_path / "older.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["trained_on"]
    torch.save(state, older)
    results = tmp_path / "res"
    source = DerainerSource.from_registry("nlcl", None, older, "cpu", None, 32, {})
    assert source.trained_on() is None
    runs = [_SplitRun(source, Dataset(ds), "ds", "train", "real", results, SETTINGS, None)]
    runs[0].prepare()
    assert runs[0].execute(progress=False).trained_on is None
    assert _provenance(results, "nlcl", "train")["trained_on"] is None
    [table] = leaderboard_tables(load_results(results))
    assert [(row.rank, row.unranked) for row in table.rows] == [(1, None)]


def test_a_rerun_records_the_overlap_for_results_from_before_it_was(tmp_path, _trained):
    ds, checkpoint = _trained
    results = tmp_path / "res"
    args = ["eval", str(ds), "--model", "nlcl", "--checkpoint", str(checkpoint), "--split",
            "train", "--results", str(results), "--metrics", "piqe"]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 0
    sidecar = results / "nlcl" / "ds" / "train.json"
    before = json.loads(sidecar.read_text())
    del before["trained_on"]
    sidecar.write_text(json.dumps(before))
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 scored, 0 failed, 3 already done" in again.output
    assert json.loads(sidecar.read_text()) == {**before, "trained_on": {"images": 3, "of": 3}}


class _Trained(DerainerSource):
    """A source whose model says it trained on `keys`; nothing is derained."""

    def __init__(self, keys: set[str]):
        super().__init__(create_derainer("identity"), "cpu", None, 32)
        self.keys = frozenset(keys)

    def trained_on(self) -> frozenset[str]:
        return self.keys


def test_a_pair_counts_by_its_source_and_a_burst_pair_by_any_still_of_its_burst(tmp_path):
    first, second, lone, video, clean = (c * 24 for c in "abcde")
    dataset = Dataset(tmp_path / "ds")
    dataset.write_info(initial_info("ds", {}))
    stills = [
        {"key": key, "sha256": key + "0" * 40, "split": "train", "layer": "rainy",
         "kind": "still", "width": 64, "height": 48, "bytes": 1000,
         "shard": "shards/train/train-000000.tar", "format": "jpeg", "members": ["jpg"],
         "sequence": sequence}
        for key, sequence in ((first, first), (second, first), (lone, None))
    ]  # fmt: skip
    manifest.write_manifest(
        dataset.samples_manifest, pa.Table.from_pylist(stills, schema=manifest.SAMPLES)
    )

    def seen(source_keys: list[str | None], trained: set[str]) -> int:
        run = _SplitRun(_Trained(trained), dataset, "ds", "p", "x", tmp_path / "r", SETTINGS,
                        None)  # fmt: skip
        run.rows_manifest = [{"key": "f" * 24, "source_key": key} for key in source_keys]
        return run._trained_on(run.source.trained_on())["images"]

    # Two real pairs of the burst (their source_key: its first still) and one of a video.
    pairs = [first, first, video]
    assert seen(pairs, {second}) == 2  # another still of the burst
    assert seen(pairs, {lone}) == 0
    assert seen(pairs, {video}) == 1
    assert seen([clean], {clean}) == 1  # a synthetic pair, by the clean capture under it
    assert seen([None], {first, second, lone, video, clean}) == 0  # imported: no source
