"""The outside patches an official CoOp-family checkout needs to run on a CPU
with torch 2.x, applied from this process, never by editing the checkout.

Each patch turns a crash into the official computation; none changes what a
run that already worked on the official code's own machine computes:

- ``lr_scheduler_verbose``: Dassl's warm-up scheduler passes ``verbose`` to
  torch's ``LRScheduler.__init__``, which no longer takes it (dropped here).
- ``torch_load_pickles``: ``torch.load`` defaults to ``weights_only=True``;
  Dassl's checkpoints pickle the optimizer and scheduler state (the official
  process loads only its own files, so ``weights_only=False`` is the default
  again in that process).
- ``numpy_int``: ``np.int`` (removed in numpy 2) is Python's ``int``.
- ``wilds_stub``: ``import dassl`` imports the WILDS package for datasets no
  CoOp-family run uses; a stand-in module when it is not installed (Dassl
  also needs scikit-learn and pandas: install them beside it).
- ``plotnine_stub``: DePT's trainers ``from plotnine import *`` and use none
  of it; a stand-in module when plotnine is not installed.
- ``cuda_noop``: ``Tensor.cuda()`` / ``Module.cuda()`` return the object
  unchanged when no GPU is present (PromptSRC moves its teacher with them).
- ``clip_file_path``: ``clip._MODELS[name]`` and ``clip._download(url)`` accept
  the path of a CLIP checkpoint file as ``MODEL.BACKBONE.NAME`` (the toy CLIP);
  likewise ``clip_maple.clip`` where a checkout has that fork too (DePT).
- ``source_rewrites``: hard-coded ViT-B/16 widths and dtype casts that crash a
  run of another width or in fp32, rewritten in the module's source text
  before it is compiled (:data:`SOURCE_REWRITES`; each replacement must match
  exactly, so a changed upstream file stops the run instead of being patched
  wrongly). Under ``PREC fp16`` on ViT-B/16 each rewritten line computes what
  the original computes.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types

#: module name -> [(original text, replacement text, why)]
SOURCE_REWRITES = {
    "utils.logger": [
        ("def setup_logger(output=None, write_to_console=False):",
         "def setup_logger(output=None, write_to_console=True):",
         "DePT's log also on the console (its progress lines are what the comparison "
         "reads); the file gets the same lines"),
    ],
    "trainers.maple": [
        ("self.proj = nn.Linear(ctx_dim, 768)",
         "self.proj = nn.Linear(ctx_dim, clip_model.visual.conv1.out_channels)",
         "the vision width, 768 on ViT-B/16"),
        ("self.proj.half()", "self.proj.to(dtype)",
         "fp16 under PREC fp16 as before; fp32 runs no longer feed a fp16 layer fp32 prompts"),
        ("nn.Parameter(torch.empty(n_ctx, 512))", "nn.Parameter(torch.empty(n_ctx, ctx_dim))",
         "the text width, 512 on ViT-B/16"),
        ("single_layer = nn.Linear(ctx_dim, 768)",
         "single_layer = nn.Linear(ctx_dim, clip_model.visual.conv1.out_channels)",
         "the vision width, 768 on ViT-B/16"),
    ],
    "trainers.tcp": [
        ("url = clip._MODELS[backbone_name]", "url = clip_ori._MODELS[backbone_name]",
         "the stock clip module's table (the same URLs), which clip_file_path extends"),
        ("model_path = clip._download(url)", "model_path = clip_ori._download(url)",
         "the stock clip module's download (the same file), which clip_file_path extends"),
        ("class_feature.reshape(class_feature.shape[0],-1,512)",
         "class_feature.reshape(class_feature.shape[0],-1,self.ctx.shape[-1])",
         "the text width, 512 on ViT-B/16"),
        ("self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)",
         "self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM); "
         "[g.__setitem__('eps', 1e-3) for g in self.optim.param_groups]",
         "Adam's eps 1e-3: the edit of Dassl's optimizer.py the official README requires"),
    ],
    "trainers.promptsrc": [
        ("clip_model_temp_image = load_clip_to_cpu(cfg, True)",
         "clip_model_temp_image = (lambda m: m.float() if dtype == torch.float32 else m)("
         "load_clip_to_cpu(cfg, True))",
         "the teacher image encoder made float32 in fp32 runs only (which otherwise feed fp32 "
         "images to fp16 weights); under PREC fp16 it is left as built"),
        ("fixed_embeddings.half().cuda()", "fixed_embeddings.to(zero_shot_features.dtype).cuda()",
         "fp16 under PREC fp16 as before; the teacher's dtype in fp32 runs"),
    ],
}


class _RewritingLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname, path, rewrites):
        super().__init__(fullname, path)
        self.rewrites = rewrites

    def get_data(self, path):
        data = super().get_data(path)
        if not path.endswith(".py"):
            return data
        text = data.decode("utf-8")
        for old, new, _why in self.rewrites:
            count = text.count(old)
            if count != 1:
                raise RuntimeError("official_patches: expected {!r} once in {}, found it {} "
                                   "times; the checkout differs from the one these patches "
                                   "were written for".format(old, path, count))
            text = text.replace(old, new)
        return text.encode("utf-8")

    def get_code(self, fullname):  # never use a cached .pyc of the unpatched file
        source = self.get_data(self.get_filename(fullname))
        return compile(source, self.get_filename(fullname), "exec", dont_inherit=True)


class _RewritingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, rewrites):
        self.rewrites = rewrites

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.rewrites:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        loader = _RewritingLoader(fullname, spec.origin, self.rewrites[fullname])
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def _patch_lr_scheduler_verbose():
    from torch.optim import lr_scheduler

    init = lr_scheduler.LRScheduler.__init__
    if "verbose" in inspect.signature(init).parameters:
        return

    def __init__(self, optimizer, last_epoch=-1, verbose=None):
        init(self, optimizer, last_epoch)

    lr_scheduler.LRScheduler.__init__ = __init__


def _patch_torch_load():
    import torch

    load = torch.load

    def torch_load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return load(*args, **kwargs)

    torch.load = torch_load


def _patch_numpy_int():
    import numpy

    if "int" not in numpy.__dict__:
        numpy.int = int


def _stub_wilds():
    def unavailable(*args, **kwargs):
        raise RuntimeError("not installed (a stand-in module for the parity runs)")

    for name in ("wilds", "plotnine"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            stub.get_dataset = stub.read_csv = unavailable
            sys.modules[name] = stub


def _patch_cuda_noop():
    import torch

    if torch.cuda.is_available():
        return
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self


def _patch_clip_file_path():
    for package in ("clip", "clip_maple"):
        try:
            clip_api = importlib.import_module(package + ".clip")
        except ImportError:
            continue
        _accept_file_paths(clip_api)


def _accept_file_paths(clip_api):
    class Models(dict):
        def __getitem__(self, name):
            if name not in self and os.path.isfile(os.path.expanduser(name)):
                return os.path.expanduser(name)
            return dict.__getitem__(self, name)

    clip_api._MODELS = Models(clip_api._MODELS)
    download = clip_api._download

    def _download(url, *args, **kwargs):
        if os.path.isfile(url):
            return url
        return download(url, *args, **kwargs)

    clip_api._download = _download


def apply(checkout):
    """Apply every patch for the official ``checkout`` (its folder first on
    ``sys.path``, so that its ``clip``, ``trainers`` and ``datasets`` are used)."""
    checkout = os.path.abspath(checkout)
    if sys.path[0] != checkout:
        sys.path.insert(0, checkout)
    sys.meta_path.insert(0, _RewritingFinder(SOURCE_REWRITES))
    _patch_lr_scheduler_verbose()
    _patch_torch_load()
    _patch_numpy_int()
    _stub_wilds()
    _patch_cuda_noop()
    _patch_clip_file_path()
