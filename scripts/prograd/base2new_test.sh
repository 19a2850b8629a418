#!/bin/bash
# ProGrad: evaluate the base-class model on the new classes.
# Usage: bash scripts/prograd/base2new_test.sh DATASET SEED [KEY VALUE ...]
# The official recipe: official_recipe.sh. Environment overrides: see
# scripts/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/official_recipe.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
