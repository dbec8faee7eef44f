"""`rainbench demo` and the data it is made of: captures made in code (camera files with
EXIF, near-duplicates, bad files; `captures`), natural photographs framed as captures
with rendered rain (`photos`), and the whole journey over them (`run`). The test-suite
fixtures and the performance benchmarks use the same captures.
"""
