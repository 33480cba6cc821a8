"""storyedge.data."""
