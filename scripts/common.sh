# shellcheck shell=bash
# Shared logic of the CoOp-family run scripts (sourced, not run).
#
# Each scripts/<method>/<job>.sh sets TRAINER, CFG and SHOTS (all overridable
# from the environment), sources this file and calls one job function:
#
#   b2n_train DATASET SEED        train on the base classes
#   b2n_test DATASET SEED         evaluate that model on the new classes
#   b2n_all DATASET SEED          both, then the Base / Novel / HM table
#   b2n_reproduce                 b2n_train + b2n_test over DATASETS x SEEDS
#   xd_train SEED                 train on ImageNet (all classes)
#   xd_test DATASET SEED          evaluate the ImageNet model on DATASET
#   xd_reproduce                  xd_train + xd_test over XD_DATASETS x SEEDS
#   few_shot DATASET SHOTS [SEED] train and test on DATASET (all classes)
#
# Environment (defaults in brackets):
#   DATA [./data]        dataset root (train.py --root)
#   OUTPUT [output]      root of the output tree
#   CFG                  config name under configs/trainers/$CFG_DIR, or a path
#                        to a .yaml file (its base name is the run-dir name);
#                        default: the script's DEFAULT_CFG (toy.yaml on DATASET toy)
#   CFG_DIR [$TRAINER]   config folder (the zero-shot CLIP uses CoOp's)
#   DATASET_CFG_DIR [configs/datasets]  folder of the DATASET.yaml files
#   SHOTS [16]           shots per class
#   BACKBONE             sets MODEL.BACKBONE.NAME (e.g. a CLIP checkpoint path)
#   OPTS                 extra KEY VALUE pairs for train.py (shell-quoted), a
#                        setting of the whole output tree (e.g. DATALOADER.NUM_WORKERS)
#   [KEY VALUE ...]      extra arguments after a job's own: a variant, run in its
#                        own folder, a level below the config's, named from them:
#                        .../CFG/SALIENCY_text/seedS for TRAINER.DISA.SALIENCY text
#   TAG                  names that variant level instead (also without extra
#                        arguments: TAG=b32 BACKBONE=ViT-B/32 ...)
#   LOADEP               epoch to evaluate [OPTIM.MAX_EPOCH of the config]
#   ZERO_SHOT [0]        1: no training, every job only evaluates
#   PYTHON [python]      interpreter; TRAINPY [train.py] the script it runs
#   NPROC [1]            N > 1: each run on N processes (torchrun --nproc_per_node N,
#                        one per GPU; DATALOADER.TRAIN_X.BATCH_SIZE stays the global batch)
#   VERBOSE [0]          1: train.py --verbose (the config dump on the console too)
#   DATASETS, SEEDS      loops of the reproduce jobs [11 datasets, 1 2 3]
#   XD_DATASETS          targets of xd_reproduce [10 datasets + 4 ImageNet variants]
#   CLIPWB_PLAN [0]      1: run nothing, print what the job would do, one line a
#                        run: "plan: run DIR", "plan: done DIR" or "plan: busy
#                        DIR" (another live run writes it; the grid runner,
#                        scripts/grid.py, plans its jobs with it)
#
# The scripts cd to the repository root first, as the originals do: relative
# paths in DATA, OUTPUT, CFG and TRAINPY are relative to it.
# A run whose result already exists is skipped; an unfinished train run is
# started again in its folder and resumes from the checkpoints there.
# Each run folder records the options it was made with (run_options.txt: the
# config file and the KEY VALUE pairs); a run whose options differ from its
# folder's is refused, never skipped, resumed or evaluated into that folder.
# While train.py writes a folder, run.lock there holds the script's pid and
# host: a second run of the same folder is refused while that process lives
# (a lock left by a dead process is taken over).

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
METHOD_DIR="$(cd "$(dirname "$0")" && pwd)"
cd "$ROOT_DIR" || exit 1

DATA=${DATA:-./data}
OUTPUT=${OUTPUT:-output}
SHOTS=${SHOTS:-16}
CFG_DIR=${CFG_DIR:-$TRAINER}
DATASET_CFG_DIR=${DATASET_CFG_DIR:-configs/datasets}
ZERO_SHOT=${ZERO_SHOT:-0}
PYTHON=${PYTHON:-python}
TRAINPY=${TRAINPY:-train.py}
NPROC=${NPROC:-1}
LAUNCH=("$PYTHON")
if [ "$NPROC" != 1 ]; then
    LAUNCH=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
fi
VERBOSE_FLAG=
if [ "${VERBOSE:-0}" = 1 ]; then VERBOSE_FLAG=--verbose; fi
# set by the scripts themselves, never from the environment
SCRIPT_OPTS=()
VARIANT=
VARIANT_DIR=
unset TABLE_CFG
BASE2NEW_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r"

die() {
    echo "error: $*" >&2
    exit 1
}

# need_args COUNT USAGE ARGS...: stop with the usage line if too few arguments.
need_args() {
    local count=$1 usage=$2
    shift 2
    if [ "$#" -lt "$count" ]; then
        die "usage: bash ${0#"$ROOT_DIR"/} $usage"
    fi
}

# resolve_config [DATASET]: set CONFIG_FILE and CFG_NAME from CFG, or stop
# clearly. Without CFG: the method's DEFAULT_CFG, except on the offline toy
# world (DATASET toy), which uses configs/trainers/$CFG_DIR/toy.yaml.
resolve_config() {
    [ -n "$TRAINER" ] || die "TRAINER is not set"
    if [ -z "$CFG" ]; then
        if [ "${1:-}" = toy ] && [ -f "configs/trainers/$CFG_DIR/toy.yaml" ]; then
            CFG=toy
        else
            CFG=$DEFAULT_CFG
        fi
    fi
    [ -n "$CFG" ] || die "CFG is not set: give a config name from configs/trainers/$CFG_DIR/"
    if [[ "$CFG" == *.yaml ]]; then
        CONFIG_FILE=$CFG
        CFG_NAME=$(basename "$CFG" .yaml)
    else
        CONFIG_FILE=configs/trainers/$CFG_DIR/$CFG.yaml
        CFG_NAME=$CFG
    fi
    if [ ! -f "$CONFIG_FILE" ]; then
        die "config file $CONFIG_FILE not found (CFG=$CFG). Available in configs/trainers/$CFG_DIR: $(cd "configs/trainers/$CFG_DIR" 2>/dev/null && ls -- *.yaml 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ')"
    fi
}

# dataset_config NAME: the dataset YAML for a config name, or stop clearly.
dataset_config() {
    local file=$DATASET_CFG_DIR/$1.yaml
    if [ ! -f "$file" ]; then
        die "dataset config $file not found (DATASET=$1). Valid names: $(cd "$DATASET_CFG_DIR" 2>/dev/null && ls -- *.yaml 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ')"
    fi
    echo "$file"
}

# collect_opts EXTRA...: USER_OPTS = SCRIPT_OPTS (a method script's defaults,
# part of its default run), BACKBONE, OPTS, then EXTRA; VARIANT_DIR (see
# set_variant) from EXTRA and TAG.
collect_opts() {
    USER_OPTS=("${SCRIPT_OPTS[@]}")
    if [ -n "$BACKBONE" ]; then
        USER_OPTS+=(MODEL.BACKBONE.NAME "$BACKBONE")
    fi
    if [ -n "$OPTS" ]; then
        local parsed
        eval "parsed=($OPTS)" || die "cannot parse OPTS='$OPTS' (use shell quoting)"
        USER_OPTS+=("${parsed[@]}")
    fi
    USER_OPTS+=("$@")
    set_variant "$@"
}

# variant_name KEY VALUE ...: a folder name read from KEY VALUE pairs: each
# pair as LASTKEY_VALUE (TRAINER.DISA.SALIENCY text -> SALIENCY_text), the
# characters a folder name should not hold as "-", pairs joined by ",";
# a name over 80 characters is cut and ends in a checksum of the whole.
variant_name() {
    local name="" part
    while [ "$#" -gt 0 ]; do
        part=$(folder_word "${1##*.}")
        if [ "$#" -gt 1 ]; then part+=_$(folder_word "$2"); shift; fi
        shift
        name+=${name:+,}$part
    done
    if [ "${#name}" -gt 80 ]; then
        name="${name:0:64}~$(printf '%s' "$name" | cksum | cut -d' ' -f1)"
    fi
    echo "$name"
}

# folder_word TEXT: TEXT with runs of characters other than A-Z a-z 0-9 . _ + -
# as one "-", no "-" or "." first, no "-" last ("x" when nothing is left).
folder_word() {
    local word=${1//[^A-Za-z0-9._+-]/-}
    while [[ $word == *--* ]]; do word=${word//--/-}; done
    while [[ $word == [-.]* ]]; do word=${word#?}; done
    word=${word%-}
    echo "${word:-x}"
}

# set_variant EXTRA...: VARIANT (TAG, else the name of EXTRA, else empty: the
# default run) and VARIANT_DIR ("/$VARIANT" or empty), the run-folder level.
set_variant() {
    VARIANT=
    if [ -n "$TAG" ]; then
        if [[ ! $TAG =~ ^[A-Za-z0-9][A-Za-z0-9._,+=-]*$ ]] || [[ $TAG =~ ^seed[0-9]+$ ]]; then
            die "TAG=$TAG is not a folder name: use letters, digits and . _ , + = - (not seedN)"
        fi
        VARIANT=$TAG
    elif [ "$#" -gt 0 ]; then
        VARIANT=$(variant_name "$@")
    fi
    VARIANT_DIR=${VARIANT:+/$VARIANT}
}

# run_options KEY VALUE...: the record of a run's options: the config file,
# then the job's KEY VALUE pairs and USER_OPTS, shell-quoted on one line
# (TRAINER.GUIDG.EXPERT_DIR is left out: it follows from the others).
run_options() {
    local all=("$@" "${USER_OPTS[@]}") kept=() i
    for ((i = 0; i < ${#all[@]}; i += 2)); do
        if [ "${all[i]}" != TRAINER.GUIDG.EXPERT_DIR ]; then
            kept+=("${all[i]}" "${all[@]:i+1:1}")
        fi
    done
    printf '%q ' --config-file "$CONFIG_FILE" "${kept[@]}"
}

# check_options DIR RECORD: stop with one sentence when DIR/run_options.txt
# holds other options than RECORD (a folder without the file is accepted).
check_options() {
    local file=$1/run_options.txt made
    [ -f "$file" ] || return 0
    made=$(sed -n 2p "$file")
    if [ "$made" != "$2" ]; then
        die "$1 was made with other options ($made) than this run's ($2): give this run its own folder with TAG=NAME (or other extra arguments), or delete $file to resume that folder with the new options"
    fi
}

# check_lock DIR: stop with one sentence while a live process writes DIR
# (its run.lock: "PID HOST"); a lock of a dead process on this host is stale
# and removed.
# process_alive PID: the process exists and is not a zombie (a killed job's
# subshell stays a zombie until something reaps it: it writes nothing)
process_alive() {
    local state=""
    kill -0 "$1" 2>/dev/null || [ -d "/proc/$1" ] || return 1
    if [ -r "/proc/$1/stat" ]; then
        state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)
    fi
    [ "$state" != Z ] && [ "$state" != X ]
}

check_lock() {
    local lock=$1/run.lock pid host
    [ -f "$lock" ] || return 0
    read -r pid host < "$lock" 2>/dev/null
    if [ "$host" = "$HOSTNAME" ]; then
        if [ -z "$pid" ] || ! process_alive "$pid"; then
            if [ "${CLIPWB_PLAN:-0}" != 1 ]; then rm -f "$lock"; fi
            return 0  # stale: its process is gone
        fi
    fi
    local why="$1 is being written by process $pid on $host (its lock file $lock): wait for that run to end or stop it (delete the lock file only if no such process runs)"
    if [ "${CLIPWB_PLAN:-0}" = 1 ]; then
        echo "plan: busy $1"
        echo "error: $why" >&2
        exit 0
    fi
    die "$why"
}

# take_lock DIR: check_lock, then create DIR/run.lock with this shell's pid
# (created only if absent, so of two runs starting at once one is refused).
take_lock() {
    local me=$BASHPID
    check_lock "$1"
    mkdir -p "$1" || die "cannot create the run folder $1"
    if ! (set -o noclobber; echo "$me $HOSTNAME" > "$1/run.lock") 2>/dev/null; then
        check_lock "$1"
        die "cannot create the lock file $1/run.lock"
    fi
}

release_lock() {  # release_lock DIR: remove DIR/run.lock if it is this shell's
    local pid
    read -r pid _ < "$1/run.lock" 2>/dev/null || return 0
    if [ "$pid" = "$BASHPID" ]; then rm -f "$1/run.lock"; fi
}

# prepare_run DIR KEY VALUE...: before a job skips, resumes or starts DIR: its
# options (check_options) and lock (check_lock); sets RUN_RECORD.
prepare_run() {
    local dir=$1
    shift
    RUN_RECORD=$(run_options "$@")
    check_options "$dir" "$RUN_RECORD"
    check_lock "$dir"
}

# final_epoch DATASET_YAML: the epoch a test loads (LOADEP, else the last
# OPTIM.MAX_EPOCH among the YAMLs and USER_OPTS, else Dassl's default 10).
final_epoch() {
    if [ -n "$LOADEP" ]; then
        echo "$LOADEP"
        return
    fi
    local epoch i
    epoch=$("$PYTHON" -c '
import sys, yaml
epoch = 10
for path in sys.argv[1:]:
    with open(path) as f:
        node = (yaml.safe_load(f) or {}).get("OPTIM") or {}
    epoch = node.get("MAX_EPOCH", epoch)
print(epoch)' "$1" "$CONFIG_FILE") || die "cannot read OPTIM.MAX_EPOCH from $CONFIG_FILE"
    for ((i = 0; i + 1 < ${#USER_OPTS[@]}; i += 2)); do
        if [ "${USER_OPTS[i]}" = OPTIM.MAX_EPOCH ]; then
            epoch=${USER_OPTS[i + 1]}
        fi
    done
    echo "$epoch"
}

# has_result DIR: a log file in DIR holds the evaluator's accuracy line.
has_result() {
    grep -qs '^\* accuracy:' "$1"/log.txt*
}

# has_checkpoint DIR EPOCH: DIR/<model>/model.pth.tar-EPOCH exists.
has_checkpoint() {
    compgen -G "$1/*/model.pth.tar-$2" >/dev/null
}

# run_finished DIR EPOCH: the one rule for "this training run finished": its
# final checkpoint (EPOCH) is saved and its log holds the final test's accuracy
# (written after training; a run killed before, even with a model-best.pth.tar
# or a run_state.pth, is unfinished and resumes when started again).
run_finished() {
    has_checkpoint "$1" "$2" && has_result "$1"
}

skip_msg() {
    echo "The results exist at $1, skipping"
    if [ "${CLIPWB_PLAN:-0}" = 1 ]; then echo "plan: done $1"; fi
}

# train_py DATASET_YAML OUTPUT_DIR ARGS...: run train.py with the common flags;
# ARGS are extra flags and the job's KEY VALUE pairs, USER_OPTS come last.
# The folder's lock is held while train.py runs (a signal to the script waits
# for train.py, which gets it too from the terminal or the grid), and its
# options are recorded (RUN_RECORD, from prepare_run).
train_py() {
    local dataset_yaml=$1 out_dir=$2 code=0
    shift 2
    if [ "${CLIPWB_PLAN:-0}" = 1 ]; then
        echo "plan: run $out_dir"
        return 0
    fi
    take_lock "$out_dir"
    # (after train.py has ended: free the folder, then end as the signal asks)
    trap 'release_lock "$out_dir"; trap - INT; kill -INT "$BASHPID"' INT
    trap 'release_lock "$out_dir"; trap - TERM; kill -TERM "$BASHPID"' TERM
    if [ ! -f "$out_dir/run_options.txt" ]; then
        printf '# the options this run folder was made with (scripts/common.sh)\n%s\n' \
            "$RUN_RECORD" > "$out_dir/run_options.txt"
    fi
    echo "Run this job and save the output to $out_dir"
    CLIPWB_SCRIPT=1 "${LAUNCH[@]}" "$TRAINPY" \
        --root "$DATA" \
        --seed "$SEED" \
        --trainer "$TRAINER" \
        --dataset-config-file "$dataset_yaml" \
        --config-file "$CONFIG_FILE" \
        --output-dir "$out_dir" \
        ${VERBOSE_FLAG:+"$VERBOSE_FLAG"} \
        "$@" "${USER_OPTS[@]}" || code=$?
    trap - INT TERM
    release_lock "$out_dir"
    return "$code"
}

# train_or_eval DATASET_YAML DIR KEY VALUE...: one run that ends with a test:
# a training run (resumed when unfinished) or, with ZERO_SHOT=1, an evaluation.
train_or_eval() {
    local dataset_yaml=$1 dir=$2 epoch
    shift 2
    prepare_run "$dir" "$@"
    if [ "$ZERO_SHOT" = 1 ]; then
        if has_result "$dir"; then skip_msg "$dir"; return 0; fi
        train_py "$dataset_yaml" "$dir" --eval-only "$@"
    else
        epoch=$(final_epoch "$dataset_yaml") || exit 1
        if run_finished "$dir" "$epoch"; then
            skip_msg "$dir"
            return 0
        fi
        train_py "$dataset_yaml" "$dir" "$@"
    fi
}

# eval_model DATASET_YAML DIR MODEL_DIR TRAIN_HINT KEY VALUE...: evaluate the
# checkpoint of MODEL_DIR at the final epoch (zero-shot: the frozen model).
eval_model() {
    local dataset_yaml=$1 dir=$2 model_dir=$3 hint=$4 epoch
    shift 4
    prepare_run "$dir" "$@"
    if has_result "$dir"; then skip_msg "$dir"; return 0; fi
    if [ "$ZERO_SHOT" = 1 ]; then
        train_py "$dataset_yaml" "$dir" --eval-only "$@"
        return
    fi
    epoch=$(final_epoch "$dataset_yaml") || exit 1
    # (a plan is made before the training it needs has run)
    if [ "${CLIPWB_PLAN:-0}" != 1 ] && ! has_checkpoint "$model_dir" "$epoch"; then
        die "no checkpoint model.pth.tar-$epoch in $model_dir/*/: run $hint first (or set LOADEP to the epoch that was saved)"
    fi
    train_py "$dataset_yaml" "$dir" --model-dir "$model_dir" --load-epoch "$epoch" --eval-only "$@"
}

b2n_dir() {  # b2n_dir PHASE DATASET SEED
    echo "$OUTPUT/base2new/$1/$2/shots_$SHOTS/$TRAINER/$CFG_NAME$VARIANT_DIR/seed$3"
}

# start_job DATASET SEED [KEY VALUE ...]: the start of a job on one dataset:
# JOB_DATASET, SEED, the config (resolve_config), JOB_DATASET_YAML and
# USER_OPTS (collect_opts), or stop with the usage line.
start_job() {
    need_args 2 "DATASET SEED [KEY VALUE ...]" "$@"
    JOB_DATASET=$1
    SEED=$2
    shift 2
    JOB_EXTRA=${*:+ $*}
    resolve_config "$JOB_DATASET"
    JOB_DATASET_YAML=$(dataset_config "$JOB_DATASET") || exit 1
    collect_opts "$@"
}

b2n_train() {
    start_job "$@"
    train_or_eval "$JOB_DATASET_YAML" "$(b2n_dir train_base "$JOB_DATASET" "$SEED")" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
}

b2n_test() {
    start_job "$@"
    eval_model "$JOB_DATASET_YAML" "$(b2n_dir test_new "$JOB_DATASET" "$SEED")" \
        "$(b2n_dir train_base "$JOB_DATASET" "$SEED")" \
        "bash ${METHOD_DIR#"$ROOT_DIR"/}/base2new_train.sh $JOB_DATASET $SEED$JOB_EXTRA" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new
}

# results_table ROOT ARGS...: print the results table of ROOT, filtered by ARGS.
results_table() {
    "$PYTHON" scripts/results.py "$@" --trainer "$TRAINER" \
        --cfg "${TABLE_CFG:-$CFG_NAME$VARIANT_DIR}" --shots "$SHOTS"
}

b2n_all() {
    need_args 2 "DATASET SEED [KEY VALUE ...]" "$@"
    b2n_train "$@" || exit 1
    b2n_test "$@" || exit 1
    results_table "$OUTPUT/base2new" --setting base2new --dataset "$1" --seed "$2"
}

# run_job JOB ARGS...: one job in a subshell, so that a failure is reported
# and the loop goes on; FAILED collects the failed jobs.
run_job() {
    if ! ("$@"); then
        FAILED+=("$*")
        return 1
    fi
}

report_failed() {
    if [ "${#FAILED[@]}" -gt 0 ]; then
        echo "error: ${#FAILED[@]} job(s) failed:" >&2
        printf '  %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
}

b2n_reproduce() {
    local dataset seed
    FAILED=()
    resolve_config
    set_variant "$@"
    for dataset in ${DATASETS:-$BASE2NEW_DATASETS}; do
        for seed in ${SEEDS:-1 2 3}; do
            run_job b2n_train "$dataset" "$seed" "$@" &&
                run_job b2n_test "$dataset" "$seed" "$@"
        done
    done
    results_table "$OUTPUT/base2new" --setting base2new
    report_failed
}

xd_source_dir() {  # xd_source_dir SEED
    echo "$OUTPUT/imagenet/$TRAINER/${CFG_NAME}_${SHOTS}shots$VARIANT_DIR/seed$1"
}

xd_train() {
    need_args 1 "SEED [KEY VALUE ...]" "$@"
    local dataset_yaml
    SEED=$1
    shift
    resolve_config
    dataset_yaml=$(dataset_config imagenet) || exit 1
    collect_opts "$@"
    train_or_eval "$dataset_yaml" "$(xd_source_dir "$SEED")" DATASET.NUM_SHOTS "$SHOTS"
}

xd_test() {
    start_job "$@"
    eval_model "$JOB_DATASET_YAML" \
        "$OUTPUT/evaluation/$TRAINER/${CFG_NAME}_${SHOTS}shots$VARIANT_DIR/$JOB_DATASET/seed$SEED" \
        "$(xd_source_dir "$SEED")" \
        "bash ${METHOD_DIR#"$ROOT_DIR"/}/xd_train.sh $SEED$JOB_EXTRA"
}

xd_reproduce() {
    local dataset seed
    FAILED=()
    resolve_config
    set_variant "$@"
    for seed in ${SEEDS:-1 2 3}; do
        run_job xd_train "$seed" "$@" || continue
        for dataset in ${XD_DATASETS:-$XD_TARGETS}; do
            run_job xd_test "$dataset" "$seed" "$@"
        done
    done
    results_table "$OUTPUT" --setting cross-dataset
    report_failed
}

# gpa_few_shot_opts NODE DATASET: PromptSRC's few-shot GPA rule for the
# PromptSRC family (NODE = TRAINER.<KEY>): the fine-grained and
# texture/satellite datasets use GPA mean 45 / std 5 (the few-shot config
# holds 30 / 30 for the others). Sets FS_OPTS.
gpa_few_shot_opts() {
    FS_OPTS=()
    case "$2" in
        stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat)
            FS_OPTS=("$1.GPA_MEAN" 45 "$1.GPA_STD" 5) ;;
    esac
}

# few_shot DATASET SHOTS [SEED]: all classes, SHOTS per class; without SEED,
# seeds 1 2 3. FS_SUBDIR (a run-dir level under the config, e.g. CoOp's
# nctx16_cscFalse_ctpend) and FS_OPTS (method KEY VALUE pairs) are optional.
few_shot() {
    need_args 2 "DATASET SHOTS [SEED] [KEY VALUE ...]" "$@"
    local dataset=$1 dataset_yaml seeds dir
    SHOTS=$2
    shift 2
    seeds=${SEEDS:-1 2 3}
    if [ "$#" -gt 0 ]; then
        seeds=$1
        shift
    fi
    resolve_config
    dataset_yaml=$(dataset_config "$dataset") || exit 1
    collect_opts "$@"
    for SEED in $seeds; do
        dir=$OUTPUT/$dataset/$TRAINER/${CFG_NAME}_${SHOTS}shots${FS_SUBDIR:+/$FS_SUBDIR}$VARIANT_DIR/seed$SEED
        train_or_eval "$dataset_yaml" "$dir" DATASET.NUM_SHOTS "$SHOTS" "${FS_OPTS[@]}" || exit 1
    done
    TABLE_CFG=$CFG_NAME${FS_SUBDIR:+/$FS_SUBDIR}$VARIANT_DIR results_table "$OUTPUT/$dataset" --setting few-shot
}
