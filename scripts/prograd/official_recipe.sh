# Sourced by the ProGrad base-to-new scripts before common.sh: the official
# recipe (RN50, 4 shots, N_CTX 16, LOSS.LAMBDA 1.0): rn50_ep100, and
# rn50_ep50 on ImageNet as the official README says; CFG / SHOTS override.
TRAINER=${TRAINER:-ProGrad}
SHOTS=${SHOTS:-4}  # the official base-to-new scripts train 4 shots
if [ -z "$DEFAULT_CFG" ]; then
    case "${1:-}" in
        imagenet) DEFAULT_CFG=rn50_ep50 ;;
        *) DEFAULT_CFG=rn50_ep100 ;;
    esac
fi
