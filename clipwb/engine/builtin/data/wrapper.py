"""``DatasetWrapper``: a torch Dataset over a list of ``Datum``."""
import torchvision.transforms as T
from torch.utils.data import Dataset

from clipwb.errors import ConfigError

from ..utils.io import read_image
from .transforms import INTERPOLATION_MODES

__all__ = ["DatasetWrapper"]


class DatasetWrapper(Dataset):
    """Item ``i`` is a dict: ``img``, ``label``, ``domain``, ``impath``, ``index``.

    ``transform`` may be a list/tuple: the k-th one's output goes to ``img``,
    ``img2``, ``img3``, ... During training each transform is applied
    ``DATALOADER.K_TRANSFORMS`` times (a list of tensors when K > 1).
    ``DATALOADER.RETURN_IMG0`` adds ``img0``: the image resized to
    ``INPUT.SIZE`` without augmentation (normalized if "normalize" is set).
    """

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ConfigError(
                "DATALOADER.K_TRANSFORMS={} needs a transform, but the transform "
                "is None (INPUT.NO_TRANSFORM?)".format(self.k_tfm))
        steps = [T.Resize(cfg.INPUT.SIZE,
                          interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
                 T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            steps.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN,
                                     std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(steps)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain,
                  "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for k, tfm in enumerate(self.transform):
                key = "img" if k == 0 else "img{}".format(k + 1)
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
