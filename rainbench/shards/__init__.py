"""The dataset on disk: its layout, immutable tar shards, Parquet manifests, the one
way a reader takes members out of shards (`members`), and the checks (`verify`) and
summaries (`stats`) over them. See docs/dataset-format.md.
"""
