"""``DatasetBase`` (Dassl's dataset container), its registry and builder."""
import os
import os.path as osp
import random
import tarfile
import zipfile
from collections import defaultdict

from clipwb.errors import ConfigError, UserInputError

from ..registry import Registry, check_availability

__all__ = ["DatasetBase", "DATASET_REGISTRY", "build_dataset"]

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Instantiate the dataset class registered under ``cfg.DATASET.NAME``."""
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names(),
                       what="DATASET.NAME")
    if cfg.VERBOSE:
        print("Loading dataset: {}".format(cfg.DATASET.NAME))
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class DatasetBase:
    """Lists of ``Datum`` for train_x (labelled), train_u (unlabelled), val, test.

    Class attributes: ``dataset_dir`` (folder under the root) and ``domains``
    (names of all domains, for DA / DG datasets).
    """

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        if not train_x:
            raise UserInputError(
                "{}: the training split is empty; check DATASET.ROOT and the "
                "split files".format(type(self).__name__))
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        """``max(label) + 1`` over ``data_source``."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """``({label: classname}, [classname sorted by label])``."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains):
        """Both lists must be non-empty and name domains of ``self.domains``."""
        if len(source_domains) == 0:
            raise ConfigError("DATASET.SOURCE_DOMAINS is empty; choose from "
                              "{}".format(self.domains))
        if len(target_domains) == 0:
            raise ConfigError("DATASET.TARGET_DOMAINS is empty; choose from "
                              "{}".format(self.domains))
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains):
        for domain in input_domains:
            if domain not in self.domains:
                raise ConfigError(
                    "Input domain must belong to {}, but got [{}]".format(
                        self.domains, domain))

    def download_data(self, url, dst, from_gdrive=True):
        """Download ``url`` to ``dst`` with gdown and extract it beside ``dst``.

        Supports ``.zip``, ``.tar`` and ``.tar.gz`` archives.
        """
        os.makedirs(osp.dirname(dst) or ".", exist_ok=True)
        if not from_gdrive:
            raise NotImplementedError("only Google-Drive downloads (gdown)")
        import gdown

        if gdown.download(url, dst, quiet=False) is None or not osp.isfile(dst):
            raise UserInputError(
                "Download of {} to {} failed (offline?). Download it by hand "
                "and place it at {}".format(url, dst, dst))
        print("Extracting file ...")
        dst_dir = osp.dirname(dst)
        if dst.endswith(".zip"):
            with zipfile.ZipFile(dst, "r") as archive:
                archive.extractall(dst_dir)
        elif dst.endswith(".tar") or dst.endswith(".tar.gz"):
            with tarfile.open(dst, "r:gz" if dst.endswith(".gz") else "r:") as tar:
                tar.extractall(dst_dir)
        else:
            raise NotImplementedError(
                "cannot extract {} (only .zip, .tar, .tar.gz)".format(dst))
        print("File extracted to {}".format(dst_dir))

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1,
                                 repeat=False):
        """Keep ``num_shots`` random items per class of each data source.

        Classes with fewer items keep all of them, or are sampled with
        replacement up to ``num_shots`` when ``repeat``. ``num_shots < 1``
        returns the inputs unchanged. One source in, one list out; several in,
        a list of lists out. Uses Python's ``random`` exactly as Dassl does,
        so a seed selects the same shots on both engines.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print("Creating a {}-shot dataset".format(num_shots))
        output = []
        for data_source in data_sources:
            picked = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    picked.extend(random.sample(items, num_shots))
                elif repeat:
                    picked.extend(random.choices(items, k=num_shots))
                else:
                    picked.extend(items)
            output.append(picked)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def _group_by(data_source, attr):
        groups = defaultdict(list)
        for item in data_source:
            groups[getattr(item, attr)].append(item)
        return groups

    def split_dataset_by_label(self, data_source):
        """``{label: [Datum, ...]}`` in order of first appearance."""
        return self._group_by(data_source, "label")

    def split_dataset_by_domain(self, data_source):
        """``{domain: [Datum, ...]}`` in order of first appearance."""
        return self._group_by(data_source, "domain")
