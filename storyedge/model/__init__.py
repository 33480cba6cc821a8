"""storyedge.model."""
