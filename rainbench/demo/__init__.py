"""Demo data made in code: realistic camera captures with EXIF, near-duplicates and bad
files, for `rainbench demo`, the test-suite fixtures and the performance benchmarks.
"""
