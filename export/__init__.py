"""storyedge.export."""
