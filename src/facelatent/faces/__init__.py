"""Face analysis: detection, alignment, identity embeddings and attribute scores."""
