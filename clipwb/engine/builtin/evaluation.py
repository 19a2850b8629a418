"""Evaluators (Dassl's ``EvaluatorBase``, ``Classification``) and
``compute_accuracy``."""
import os.path as osp
from collections import OrderedDict, defaultdict

import numpy as np
import torch

from .registry import Registry, check_availability

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "EvaluatorBase",
           "Classification", "compute_accuracy", "macro_f1_score",
           "confusion_matrix"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg, **kwargs):
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR``."""
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names(),
                       what="TEST.EVALUATOR")
    if cfg.VERBOSE:
        print("Loading evaluator: {}".format(cfg.TEST.EVALUATOR))
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent, one 1-element tensor per k.

    ``output`` is (batch, classes) scores (or a tuple whose first item is);
    ``target`` is (batch,) labels.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    pred = output.topk(max(topk), 1, True, True)[1].t()
    hits = pred.eq(target.view(1, -1).expand_as(pred))
    n = target.size(0)
    return [hits[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / n)
            for k in topk]


def macro_f1_score(y_true, y_pred):
    """Unweighted mean of per-class F1 = 2PR/(P+R), over the labels present in
    ``y_true`` (sklearn's ``f1_score(average="macro", labels=unique(y_true))``);
    a class with no true positive scores 0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for label in np.unique(y_true):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        scores.append(0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def confusion_matrix(y_true, y_pred):
    """Row-normalised confusion matrix over the sorted labels of both lists
    (sklearn's ``confusion_matrix(normalize="true")``)."""
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    index = {label: i for i, label in enumerate(labels)}
    cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for t, p in zip(y_true, y_pred):
        cmat[index[t], index[p]] += 1
    rows = cmat.sum(1, keepdims=True)
    return np.divide(cmat, rows, out=np.zeros_like(cmat), where=rows > 0)


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``,
    ``evaluate() -> OrderedDict`` (its first value is what ``test()`` returns)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def reset(self):
        raise NotImplementedError

    def process(self, mo, gt):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error and macro-F1 of argmax predictions; per-class accuracy
    with ``TEST.PER_CLASS_RESULT``; ``OUTPUT_DIR/cmat.pt`` with
    ``TEST.COMPUTE_CMAT``."""

    def __init__(self, cfg, lab2cname=None, **kwargs):
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class = cfg.TEST.PER_CLASS_RESULT
        if self._per_class and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname")
        self.reset()

    def reset(self):
        self._correct = 0
        self._total = 0
        self._y_true = []
        self._y_pred = []
        self._per_class_res = defaultdict(list) if self._per_class else None

    def process(self, mo, gt):
        """``mo``: (batch, classes) scores; ``gt``: (batch,) labels."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        true_list = gt.detach().cpu().tolist()
        self._y_true.extend(true_list)
        self._y_pred.extend(pred.detach().cpu().tolist())
        if self._per_class_res is not None:
            for label, hit in zip(true_list, matches.tolist()):
                self._per_class_res[label].append(int(hit))

    def evaluate(self):
        results = OrderedDict()
        if self._total == 0:
            raise ValueError("Classification.evaluate(): no sample was processed")
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print("=> result\n"
              "* total: {:,}\n"
              "* correct: {:,}\n"
              "* accuracy: {:.1f}%\n"
              "* error: {:.1f}%\n"
              "* macro_f1: {:.1f}%".format(self._total, self._correct, acc, err,
                                           macro_f1))
        if self._per_class_res is not None:
            results["perclass_accuracy"] = self._print_per_class()
        if self.cfg.TEST.COMPUTE_CMAT:
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(confusion_matrix(self._y_true, self._y_pred), save_path)
            print("Confusion matrix is saved to {}".format(save_path))
        return results

    def _print_per_class(self):
        print("=> per-class result")
        accs = []
        for label in sorted(self._per_class_res):
            res = self._per_class_res[label]
            correct, total = sum(res), len(res)
            acc = 100.0 * correct / total
            accs.append(acc)
            print("* class: {} ({})\ttotal: {:,}\tcorrect: {:,}\tacc: {:.1f}%"
                  .format(label, self._lab2cname[label], total, correct, acc))
        mean_acc = float(np.mean(accs))
        print("* average: {:.1f}%".format(mean_acc))
        return mean_acc
