"""The dataset on disk: its layout, immutable tar shards, Parquet manifests, and the
checks (`verify`) and summaries (`stats`) over them. See docs/dataset-format.md.
"""
