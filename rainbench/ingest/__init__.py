"""`rainbench ingest`: camera captures → shards + manifests, in four resumable
phases — scan (probe every new file), plan (dedup, near-duplicates, splits,
shards), write (one shard per unit of work, in parallel) and finalize.
"""

from rainbench.ingest.run import IngestOptions, IngestSummary, ingest

__all__ = ["IngestOptions", "IngestSummary", "ingest"]
