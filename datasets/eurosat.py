"""EuroSAT (Helber et al., 2019): 10 land-use classes of Sentinel-2 tiles, CoOp's fixed split."""

from .coop_dataset import CoOpDataset

# Folder name -> the descriptive class name CoOp's split file uses.
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


class EuroSAT(CoOpDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_name = "split_zhou_EuroSAT.json"
    layout = ("2750/<class>/<class>_<n>.jpg", split_name)
    source = "http://madm.dfki.de/files/sentinel/EuroSAT.zip (extract it under eurosat/)"
    drive_files = {split_name: "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"}
