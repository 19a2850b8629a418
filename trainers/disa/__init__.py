"""DiSa (specs/disa.md): ``trainer.py`` (the trainer and its loss), ``losses.py``
(L_CIR, L_DIR, prototypes), ``saliency.py`` (patch saliency and masking)."""
