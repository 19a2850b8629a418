#!/bin/bash
# ProGrad: base-to-new over DATASETS x SEEDS (the official recipe: RN50,
# 4 shots, rn50_ep100; give CFG=rn50_ep50 for ImageNet as the official README
# says, or run it on its own with scripts/prograd/base2new.sh imagenet SEED).
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ProGrad}
DEFAULT_CFG=rn50_ep100  # CFG overrides it
SHOTS=${SHOTS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
