"""Rain types: the features measured on every capture, the tagger that turns them
into drizzle / streak / storm / fog-like, refitting it to a lab's own labels, and label
sheets. Applying them to a dataset is `rainbench.ingest.tag` (a dataset's fitted tagger,
`rainbench.ingest.taggers`); calibrating the shipped tagger, `rainbench.train.tagger`.
"""
