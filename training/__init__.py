"""storyedge.training: the ``storyedge train`` stage.

Modules, one job each:

* :mod:`~storyedge.training.run` - one run: device, run-dir checks, data, model, loop, summary;
* :mod:`~storyedge.training.workspace` - run-dir checks (writable, fresh, resumable);
* :mod:`~storyedge.training.prepare` - config → splits → tokenizer → encoded windows;
* :mod:`~storyedge.training.batches` - deterministic, resumable batching;
* :mod:`~storyedge.training.loss` - padding-masked cross-entropy, perplexity;
* :mod:`~storyedge.training.unigram` - the unigram baseline perplexity;
* :mod:`~storyedge.training.step` - optimizer, train / eval steps (eager, tf.function, XLA);
* :mod:`~storyedge.training.checkpoint` - checkpoints of model, optimizer and loop position;
* :mod:`~storyedge.training.loop` - the epoch loop (progress, validation, best model);
* :mod:`~storyedge.training.strategy` - ``--strategy``: the tf.distribute strategy of a run;
* :mod:`~storyedge.training.distributed` - steps and batches under a strategy (global token count);
* :mod:`~storyedge.training.signals` - Ctrl-C handling;
* :mod:`~storyedge.training.history` - history.json / history.csv / curves.png;
* :mod:`~storyedge.training.tensorboard` - TensorBoard scalars without the tensorboard package;
* :mod:`~storyedge.training.report` - ``summary.json`` (:class:`~storyedge.training.report.TrainingSummary`)
  and the final summary screen.

The ``train`` click command is :mod:`storyedge.app.train_cli`. :mod:`~storyedge.training.run`
imports TensorFlow through :func:`storyedge.devices.import_tensorflow` (a broken Metal plugin is
handled there) before any module that imports it at module level.
"""
