"""storyedge.training."""
