"""Rain types: the features measured on every capture, the tagger that turns them
into drizzle / streak / storm / fog-like, and label sheets. Applying them to a
dataset is `rainbench.ingest.tag`; fitting the tagger, `rainbench.train.tagger`.
"""
