"""SUN397 (Xiao et al., 2010): 397 scene categories, CoOp's fixed split.

Class names put the qualifier first: ``b/bakery/shop`` is "shop bakery".
"""

from .coop_dataset import CoOpDataset


class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_name = "split_zhou_SUN397.json"
    layout = ("SUN397/<letter>/<class>/<image>.jpg", "ClassName.txt", split_name)
    source = ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz and "
              "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip "
              "(extract both under sun397/)")
    drive_files = {split_name: "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"}
