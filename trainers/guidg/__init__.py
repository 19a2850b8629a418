"""GuiDG (specs/guidg.md): ``trainer.py`` (step 1 ``GuiDGExpert``, step 2
``GuiDG``), ``finetune.py`` (the fine-tuning loop and the CLIPood / ERM / UEO +
WiSE-FT baselines), ``cmattn.py`` (cross-modal attention), ``losses.py``,
``averaging.py`` (BMA / WiSE-FT), ``sampler.py`` (domain-balanced batches)."""
