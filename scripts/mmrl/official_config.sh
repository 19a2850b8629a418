# Sourced by the MMRL base-to-new scripts before common.sh: the official
# scripts train ImageNet with vit_b16_imagenet and every other dataset with
# vit_b16 (DATASET is the script's first argument; CFG overrides it).
TRAINER=${TRAINER:-MMRL}
if [ -z "$DEFAULT_CFG" ]; then
    case "${1:-}" in
        imagenet) DEFAULT_CFG=vit_b16_imagenet ;;
        *) DEFAULT_CFG=vit_b16 ;;
    esac
fi
