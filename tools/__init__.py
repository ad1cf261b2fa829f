"""Project tools: scene generators, demo model training, media, benchmarks."""
