#!/bin/bash
# GuiDG leave-one-domain-out: every domain of DATASET in turn is the target
# (experts are trained once per domain and reused), then the per-domain table.
# Usage: bash scripts/guidg/dg_loo.sh DATASET SEED [KEY VALUE ...]
#   e.g. for s in 1 2 3; do bash scripts/guidg/dg_loo.sh terra_incognita $s; done
#   PRESET=official: the *_official configs of both steps (the official training loop)
# Environment overrides: see scripts/guidg/dg_common.sh and scripts/common.sh.
TRAINER=${TRAINER:-GuiDG}
DEFAULT_CFG=vit_b16_clipood  # CFG overrides it; DATASET toy: toy.yaml
CFG_DIR=${CFG_DIR:-GuiDG}
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$ROOT_DIR/scripts/guidg/dg_common.sh"
dg_loo "$@"
