#!/bin/bash
# ProGrad: train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/prograd/base2new.sh DATASET SEED [KEY VALUE ...]
# The official recipe: official_recipe.sh. Environment overrides: see
# scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/official_recipe.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
