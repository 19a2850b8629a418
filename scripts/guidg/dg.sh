#!/bin/bash
# GuiDG on a DomainBed dataset: experts of the source domains (step 1, when
# missing), guided fine-tuning (step 2) and the test on TARGET_DOMAIN.
# Usage: bash scripts/guidg/dg.sh DATASET TARGET_DOMAIN SEED [KEY VALUE ...]
#   e.g. bash scripts/guidg/dg.sh pacs sketch 1
#   offline: bash scripts/guidg/dg.sh toy sketch 1 (the toy world, toy.yaml configs)
# Baselines alone: TRAINER=CLIPood (or ERMWiSEFT, UEOWiSEFT) bash scripts/guidg/dg.sh ...
# Other baselines plugged in: CFG=vit_b16_erm_wf or CFG=vit_b16_ueo_wf (GuiDG configs)
# The official code's training loop: PRESET=official bash scripts/guidg/dg.sh pacs sketch 1
#   (the *_official configs of both steps; docs/METHODS.md lists what differs)
# Environment overrides: see scripts/guidg/dg_common.sh and scripts/common.sh.
TRAINER=${TRAINER:-GuiDG}
DEFAULT_CFG=vit_b16_clipood  # CFG overrides it; DATASET toy: toy.yaml
CFG_DIR=${CFG_DIR:-GuiDG}
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$ROOT_DIR/scripts/guidg/dg_common.sh"
dg_run "$@"
"$PYTHON" scripts/results.py "$OUTPUT/dg/$1" --setting dg --published --dataset "$1"
