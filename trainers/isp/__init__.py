"""ISP (specs/isp.md): ``trainer.py`` (the trainer and its loss), ``learner.py``
(the prompt learner), ``modules.py`` (self- and cross-structural prompt
modules), ``losses.py`` (sample-probing weights)."""
