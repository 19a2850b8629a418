"""UCF101 (Soomro et al., 2012): 101 actions, one middle frame per video, CoOp's fixed split."""

from .coop_dataset import CoOpDataset


class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_name = "split_zhou_UCF101.json"
    layout = ("UCF-101-midframes/<Action_Name>/<video>.jpg", split_name)
    source = ("UCF-101-midframes.zip, https://drive.google.com/file/d/"
              "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O/view (extract it under ucf101/)")
    drive_files = {split_name: "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"}
