# Sourced by the TCP scripts after common.sh. The official train.py trains
# ImageNet and SUN397 for 25 epochs instead of the config's 50: under the
# official config (vit_b16_ep100_ctxv1) those datasets' runs get
# OPTIM.MAX_EPOCH 25 as a script default (same run folder, no variant).
eval "official_start_job() $(declare -f start_job | tail -n +2)"
start_job() {
    SCRIPT_OPTS=()
    case "${1:-}" in
        imagenet | sun397)
            if [ "${CFG:-$DEFAULT_CFG}" = vit_b16_ep100_ctxv1 ]; then
                SCRIPT_OPTS=(OPTIM.MAX_EPOCH 25)
            fi ;;
    esac
    official_start_job "$@"
}
