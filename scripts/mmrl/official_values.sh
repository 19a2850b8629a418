# Sourced by the MMRL scripts after common.sh. The official train.py merges,
# after the config file and before the command line's options, per-dataset
# values (its trainers/config.py: REG_WEIGHT, and EuroSAT's REP_DIM 2048),
# and its scripts pass TASK (B2N / FS / CD: the test-time rule) and, for the
# cross-dataset runs, REG_WEIGHT 0.2 and REP_DIM 512. Here they are the
# scripts' own options (SCRIPT_OPTS: the default run's folder, no variant);
# extra KEY VALUE arguments still override them.

# mmrl_script_opts TASK DATASET: SCRIPT_OPTS for one job.
mmrl_script_opts() {
    SCRIPT_OPTS=(TASK "$1")
    if [ "$1" = CD ]; then
        SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512)
        return
    fi
    case "$2" in
        stanford_cars) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 7.0) ;;
        fgvc_aircraft | sun397 | dtd) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 6.0) ;;
        food101) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 5.0) ;;
        oxford_flowers) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 4.0) ;;
        ucf101) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 3.0) ;;
        imagenet | caltech101) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 0.5) ;;
        oxford_pets) SCRIPT_OPTS+=(TRAINER.MMRL.REG_WEIGHT 0.2) ;;
        eurosat) SCRIPT_OPTS+=(TRAINER.MMRL.REP_DIM 2048 TRAINER.MMRL.REG_WEIGHT 0.01) ;;
    esac
}

# every job on one dataset (base-to-novel, cross-dataset tests) starts here
eval "common_start_job() $(declare -f start_job | tail -n +2)"
start_job() {
    mmrl_script_opts "$MMRL_TASK" "${1:-}"
    common_start_job "$@"
}
