"""storyedge.bench."""
