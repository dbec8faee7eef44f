"""What ingest's near-duplicate search costs per new capture as the dataset grows: the
pHash index (`rainbench.capture.phash.HashIndex`) against comparing the capture's 8
hashes with every stored one, the search ingest made before it, timed in the same run.

    python benchmarks/near_duplicates.py                      # 50 000, 200 000, 1 000 000
    python benchmarks/near_duplicates.py --hashes 5000000 --queries 200

For each N: N stored hashes, then --queries captures' 8 hashes each, half of them a
stored hash with a few bits changed (a near-duplicate to find), searched both ways at
the default --near-dup-bits. Both must find the same (distance, capture) for every
query. The hashes are uniformly random: `tests/capture/test_phash.py` checks how
pHashes of real photographs' crops spread over the index's parts.
"""

import argparse
import time

import numpy as np
from bench import log  # benchmarks/ is on sys.path when run as a script

from rainbench.capture.phash import HashIndex
from rainbench.ingest.run import DEFAULT_NEAR_DUP_BITS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hashes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=400, help="captures searched at each N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| stored hashes | index, per capture | comparing all, per capture | ratio |")
    print("|---:|---:|---:|---:|")
    for count in args.hashes:
        log(f"{count} stored hashes")
        hashes = rng.integers(0, 1 << 64, count, dtype=np.uint64)
        queries = _queries(rng, hashes, args.queries)
        indexed = HashIndex(hashes, DEFAULT_NEAR_DUP_BITS, compare_all_below=0)
        compared = HashIndex(hashes, DEFAULT_NEAR_DUP_BITS, compare_all_below=count + 1)
        index_time, found = _search(indexed, queries, count)
        all_time, expected = _search(compared, queries, count)
        if found != expected:
            raise SystemExit(f"the index found other near-duplicates than comparing all at {count}")
        print(
            f"| {count:,} | {index_time * 1e3:.2f} ms | {all_time * 1e3:.2f} ms "
            f"| {all_time / index_time:.1f}× |"
        )
    return 0


def _queries(rng: np.random.Generator, hashes: np.ndarray, count: int) -> list[list[int]]:
    """Each capture's 8 hashes; every other one's first is a stored hash, 1–8 bits changed."""
    queries = []
    for number in range(count):
        values = [int(value) for value in rng.integers(0, 1 << 64, 8, dtype=np.uint64)]
        if number % 2:
            bits = rng.choice(64, size=rng.integers(1, 9), replace=False)
            values[0] = int(hashes[rng.integers(len(hashes))]) ^ sum(1 << int(b) for b in bits)
        queries.append(values)
    return queries


def _search(index: HashIndex, queries: list[list[int]], count: int) -> tuple[float, list]:
    start = time.perf_counter()
    found = [index.nearest(query, count) for query in queries]
    return (time.perf_counter() - start) / len(queries), found


if __name__ == "__main__":
    raise SystemExit(main())
