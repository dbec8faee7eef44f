"""`rainbench ingest`: camera captures → shards + manifests, in four resumable
phases — scan (probe every new file), plan (dedup, near-duplicates, splits,
shards), write (one shard per unit of work, in parallel) and finalize; and
`rainbench tag` (`rainbench.ingest.tag`), which re-tags a dataset's manifest, with
the tagger fitted to its labels when it has one (`rainbench.ingest.taggers`).
"""

__all__ = ["IngestOptions", "IngestSummary", "ingest"]


def __getattr__(name: str):
    # Imported on demand: worker processes import scan and write only, and stay
    # free of the orchestrator's pyarrow and tqdm.
    if name in __all__:
        from rainbench.ingest import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
