"""Real pairs from a lab's own sequences: rain videos from a fixed camera and bursts of
stills, whose clean frame is estimated from time (`rainbench pairs`)."""
