#!/bin/bash
# ProGrad: train on the base classes.
# Usage: bash scripts/prograd/base2new_train.sh DATASET SEED [KEY VALUE ...]
# The official recipe: RN50, 4 shots, N_CTX 16, LOSS.LAMBDA 1.0 (rn50_ep100;
# rn50_ep50 on ImageNet). Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ProGrad}
SHOTS=${SHOTS:-4}  # the official base-to-new scripts train 4 shots
if [ -z "$DEFAULT_CFG" ]; then
    case "${1:-}" in
        imagenet) DEFAULT_CFG=rn50_ep50 ;;  # the official README: rn50_ep50 on ImageNet
        *) DEFAULT_CFG=rn50_ep100 ;;
    esac
fi
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
