# Sourced by the MMA base-to-novel scripts after common.sh. The official
# run_examples.sh trains ImageNet with vit_b16_ep5_imnet, which is
# vit_b16_ep5 with a training batch of 128: under the default config, the
# ImageNet runs get DATALOADER.TRAIN_X.BATCH_SIZE 128 as a script default
# (same run folder as the other datasets, so one table holds all eleven).
eval "official_start_job() $(declare -f start_job | tail -n +2)"
start_job() {
    SCRIPT_OPTS=()
    if [ "${1:-}" = imagenet ] && [ "${CFG:-$DEFAULT_CFG}" = vit_b16_ep5 ]; then
        SCRIPT_OPTS=(DATALOADER.TRAIN_X.BATCH_SIZE 128)
    fi
    official_start_job "$@"
}
