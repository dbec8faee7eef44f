"""Reading camera captures: format detection, validating decodes, EXIF, GPS removal
and perceptual hashes. Nothing here writes to a dataset; `rainbench.ingest` does.
"""
