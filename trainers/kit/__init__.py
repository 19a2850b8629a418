"""The prompted-CLIP kit every trainer imports (and which imports no trainer):
``clip_loader`` (CLIP by name or file, stock or a CoOp-family fork),
``prompted_encoders`` (the stock blocks run one by one with prompts),
``prompted_clip``, ``prompt_learners`` (CoOp / CoCoOp / IVLP / MaPLe),
``precision``, ``templates``, ``frozen_clip``, ``config`` (key helpers),
``prompt_trainer`` (``ClipPromptTrainer``, the trainer base),
``scl_losses`` (PromptSRC's self-regulating losses and GPA),
``handcrafted_text`` (KgCoOp's hand-crafted prompt features and L_kg, which
methods built on KgCoOp's code share) and ``block_adapters`` (MMA's
adapters of both towers with a shared layer, as block hooks)."""
