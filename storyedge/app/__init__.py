"""storyedge.app: the top floor: the click CLI, ``storyedge quickstart``, the ``--random-init``
pipeline and ``storyedge generate``. It chains the stages (``storyedge.training``,
``storyedge.export``, ``storyedge.bench``) over the core; nothing imports it."""
