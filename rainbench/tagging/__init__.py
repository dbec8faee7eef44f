"""Rain types: the features measured on every capture, the tagger that turns them
into drizzle / streak / storm / fog-like, label sheets, and `rainbench tag`.
"""
