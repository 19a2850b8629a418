# shellcheck shell=bash
# GuiDG's two-step domain-generalization jobs (sourced after ../common.sh).
#
#   dg_run DATASET TARGET SEED [KEY VALUE ...]
#       step 1: train the experts of the source domains: a finished one is
#               reused, an unfinished one (killed, or stopped by an error)
#               resumes in its folder (run_finished in ../common.sh: its final
#               checkpoint and its log's accuracy line);
#       step 2: guided fine-tuning on the sources, then the test on TARGET.
#       With TRAINER=CLIPood / ERMWiSEFT / UEOWiSEFT the baseline runs alone
#       (no experts).
#   dg_loo DATASET SEED [KEY VALUE ...]: dg_run for every target domain, then the table.
#
# DATASET toy is the offline toy world (configs/datasets/toy_dg.yaml, ToyShapesDG,
# domains plain textured sketch noisy) with the toy.yaml configs of GuiDG and
# GuiDGExpert: `bash scripts/guidg/dg.sh toy sketch 1` runs on a CPU in minutes.
#
# Environment (defaults in brackets; see also scripts/common.sh):
#   TRAINER [GuiDG]  CFG [vit_b16_clipood; toy on DATASET toy]  CFG_DIR [GuiDG]
#   EXPERT_CFG [vit_b16_c16_ep31; toy on DATASET toy]  config of the experts
#                    (configs/trainers/GuiDGExpert/)
#   EXPERT_OPTS      extra KEY VALUE pairs for the expert runs only (shell-quoted)
#   DOMAINS          the dataset's domains [its full list]; sources = DOMAINS - TARGET
#   SOURCES          the source domains [DOMAINS - TARGET]
#   EXPERT_PER_TARGET [0]  1: experts depend on the target (ImageNet-DG's class sets)
#   PRESET [ours]    official: both steps use the *_official configs (CFG_official,
#                    EXPERT_CFG_official: the official code's training loop, see
#                    docs/METHODS.md); ours: the configs as named
#
# Run folders (VARIANT: a level named from the extra arguments or TAG, see
# scripts/common.sh; none for the default run):
#   experts  $OUTPUT/dg/DATASET/shots_K/GuiDGExpert/EXPERT_CFG[/VARIANT]/expert_DOMAIN[_for_TARGET]/seedS
#   step 2   $OUTPUT/dg/DATASET/shots_K/TRAINER/CFG[/VARIANT]/TARGET/seedS

EXPERT_TRAINER=GuiDGExpert
DEFAULT_EXPERT_CFG=vit_b16_c16_ep31  # EXPERT_CFG overrides it; DATASET toy: toy.yaml
EXPERT_PER_TARGET=${EXPERT_PER_TARGET:-0}
PRESET=${PRESET:-ours}

# dg_domains DATASET: the domains of a DG dataset (config name), or DOMAINS.
dg_domains() {
    if [ -n "$DOMAINS" ]; then echo "$DOMAINS"; return; fi
    case $1 in
        pacs) echo "art_painting cartoon photo sketch" ;;
        vlcs) echo "Caltech101 LabelMe SUN09 VOC2007" ;;
        office_home) echo "Art Clipart Product Real_World" ;;
        terra_incognita) echo "location_100 location_38 location_43 location_46" ;;
        domainnet) echo "clipart infograph painting quickdraw real sketch" ;;
        imagenet_dg) echo "imagenet_train imagenet_sketch imagenetv2 imagenet_a imagenet_val imagenet_r" ;;
        toy) echo "plain textured sketch noisy" ;;
        *) die "$1 is not a DG dataset: use pacs, vlcs, office_home, terra_incognita, domainnet, imagenet_dg or toy" ;;
    esac
}

# dg_dataset_config DATASET: the dataset YAML of a DG dataset name (toy: the
# DomainBed view of the toy world, toy_dg.yaml; toy.yaml is its base-to-novel view).
dg_dataset_config() {
    case $1 in
        toy) dataset_config toy_dg ;;
        *) dataset_config "$1" ;;
    esac
}

# resolve_expert_config DATASET: EXPERT_CFG, else toy on DATASET toy, else the default.
resolve_expert_config() {
    if [ -z "$EXPERT_CFG" ]; then
        if [ "$1" = toy ] && [ -f "configs/trainers/$EXPERT_TRAINER/toy.yaml" ]; then
            EXPERT_CFG=toy
        else
            EXPERT_CFG=$DEFAULT_EXPERT_CFG
        fi
    fi
}

# official_name NAME: NAME_official (NAME itself when it already ends so).
official_name() {
    case $1 in
        *_official) echo "$1" ;;
        *.yaml) die "PRESET=official picks configs by name: give CFG / EXPERT_CFG as a name, not the file $1" ;;
        *) echo "$1_official" ;;
    esac
}

# apply_preset DATASET: after resolve_config / resolve_expert_config, switch both
# steps to the *_official configs with PRESET=official.
apply_preset() {
    case $PRESET in
        ours) return 0 ;;
        official) ;;
        *) die "PRESET=$PRESET is not a preset: use ours (the default) or official" ;;
    esac
    CFG=$(official_name "$CFG") || exit 1
    EXPERT_CFG=$(official_name "$EXPERT_CFG") || exit 1
    resolve_config "$1"
    [ -f "configs/trainers/$EXPERT_TRAINER/$EXPERT_CFG.yaml" ] || die "PRESET=official: expert config configs/trainers/$EXPERT_TRAINER/$EXPERT_CFG.yaml not found"
    echo "Preset: official (configs $CFG_NAME and $EXPERT_CFG)"
}

# py_list A B ...: the Python list literal ['A', 'B'] for a yacs option.
py_list() {
    local out="" item
    for item in "$@"; do out+="${out:+, }'$item'"; done
    echo "[$out]"
}

expert_dir() {  # expert_dir DATASET DOMAIN SEED TARGET
    local name=expert_$2
    if [ "$EXPERT_PER_TARGET" = 1 ]; then name+=_for_$4; fi
    echo "$OUTPUT/dg/$1/shots_$SHOTS/$EXPERT_TRAINER/$EXPERT_CFG$VARIANT_DIR/$name/seed$3"
}

dg_dir() {  # dg_dir DATASET TARGET SEED
    echo "$OUTPUT/dg/$1/shots_$SHOTS/$TRAINER/$CFG_NAME$VARIANT_DIR/$2/seed$3"
}

# train_expert DATASET_YAML DATASET DOMAIN SEED TARGET: step 1 for one domain
# (train_py in a subshell, as the expert trainer with its config; the folder's
# options are checked and recorded as for every run).
train_expert() {
    local dataset_yaml=$1 dataset=$2 domain=$3 seed=$4 target=$5 dir test_domain
    dir=$(expert_dir "$dataset" "$domain" "$seed" "$target")
    test_domain=$domain
    if [ "$EXPERT_PER_TARGET" = 1 ]; then test_domain=$target; fi
    local expert_config=configs/trainers/$EXPERT_TRAINER/$EXPERT_CFG.yaml
    [ -f "$expert_config" ] || die "expert config $expert_config not found (EXPERT_CFG=$EXPERT_CFG)"
    local extra=()
    if [ -n "$EXPERT_OPTS" ]; then
        eval "extra=($EXPERT_OPTS)" || die "cannot parse EXPERT_OPTS='$EXPERT_OPTS'"
    fi
    (
        TRAINER=$EXPERT_TRAINER CONFIG_FILE=$expert_config SEED=$seed
        USER_OPTS+=("${extra[@]}")
        opts=(DATASET.SOURCE_DOMAINS "$(py_list "$domain")"
              DATASET.TARGET_DOMAINS "$(py_list "$test_domain")"
              DATASET.DG_TRAIN_POOL A DATASET.NUM_SHOTS "$SHOTS")
        prepare_run "$dir" "${opts[@]}"
        epoch=$(LOADEP=; final_epoch "$dataset_yaml") || exit 1
        if run_finished "$dir" "$epoch"; then
            echo "Reusing the expert of $domain at $dir"
            exit 0
        fi
        if [ -d "$dir" ]; then
            echo "Step 1: the expert of $domain in $dir is unfinished: resuming it"
        else
            echo "Step 1: training the expert of $domain in $dir"
        fi
        train_py "$dataset_yaml" "$dir" "${opts[@]}"
    ) || return 1
}

dg_run() {
    need_args 3 "DATASET TARGET SEED [KEY VALUE ...]" "$@"
    local dataset=$1 target=$2 dataset_yaml domain sources=() found=0 step2=()
    SEED=$3
    shift 3
    resolve_config "$dataset"
    resolve_expert_config "$dataset"
    apply_preset "$dataset"
    dataset_yaml=$(dg_dataset_config "$dataset") || exit 1
    collect_opts "$@"
    for domain in $(dg_domains "$dataset"); do
        if [ "$domain" = "$target" ]; then found=1; continue; fi
        sources+=("$domain")
    done
    if [ -n "$SOURCES" ]; then read -r -a sources <<< "$SOURCES"; fi
    [ "$found" = 1 ] || die "$target is not a domain of $dataset: use one of $(dg_domains "$dataset")"
    step2=(DATASET.SOURCE_DOMAINS "$(py_list "${sources[@]}")"
           DATASET.TARGET_DOMAINS "$(py_list "$target")"
           DATASET.DG_TRAIN_POOL B DATASET.NUM_SHOTS "$SHOTS")
    if [ "$TRAINER" = GuiDG ]; then
        for domain in "${sources[@]}"; do
            train_expert "$dataset_yaml" "$dataset" "$domain" "$SEED" "$target" || exit 1
        done
        local template
        template=$(expert_dir "$dataset" "{domain}" "$SEED" "$target")
        step2+=(TRAINER.GUIDG.EXPERT_DIR "$template")
    fi
    echo "Step 2: $TRAINER on ${sources[*]} -> $target"
    train_or_eval "$dataset_yaml" "$(dg_dir "$dataset" "$target" "$SEED")" "${step2[@]}" || exit 1
}

dg_table() {  # dg_table DATASET
    "$PYTHON" scripts/results.py "$OUTPUT/dg/$1" --setting dg --published
}

dg_loo() {
    need_args 2 "DATASET SEED [KEY VALUE ...]" "$@"
    local dataset=$1 seed=$2 target
    shift 2
    FAILED=()
    for target in $(dg_domains "$dataset"); do
        run_job dg_run "$dataset" "$target" "$seed" "$@"
    done
    dg_table "$dataset"
    report_failed
}
