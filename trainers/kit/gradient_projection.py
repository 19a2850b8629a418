"""Gradient projection onto a non-conflicting direction (ProGrad's update).

ProGrad (Zhu et al., "Prompt-aligned Gradient for Prompt Tuning", ICCV 2023,
Eq. (4) and the official Dassl fork's ``prograd_backward_and_update``)
updates each learnable tensor with the gradient ``g`` of the task loss made
to not conflict with the gradient ``g_gen`` of a "general knowledge" loss:

    G_prograd = g                              if  g . g_gen >= 0
              = g - lambda (g . u) u           otherwise,   u = g_gen / ||g_gen||

``lambda = 1`` removes the whole conflicting component (the result is
orthogonal to ``g_gen``); ``0 <= lambda < 1`` removes part of it. The test
is taken per tensor, on the cosine computed from the two normalised
gradients, in the gradients' own dtype (float16 for float16 parameters), as
the official code does; a zero general gradient (NaN cosine) leaves ``g``
unchanged there.

:func:`project_conflicting` is the rule on one pair of tensors;
:func:`aligned_gradients` computes both gradients of a set of parameters and
writes the projected one to ``.grad``, ready for an optimizer step.

Several processes (torchrun): the projection is nonlinear in ``g_gen``, so
projecting each rank's half-batch gradients would not give the global
batch's update. Both gradients are averaged over the ranks first
(:func:`~clipwb.engine.distributed.average_tensors`): with equal slices they
are then the global batch's ``g`` and ``g_gen``, and every rank projects
them alike to the single-process ``G_prograd``.
"""
import torch

from clipwb.engine.distributed import average_tensors


def project_conflicting(grad, general, lambda_=1.0):
    """``grad`` with ``lambda_`` times its component along ``general``
    removed when the two conflict (negative cosine); else ``grad`` itself.
    Same shapes; see the module docstring for the equation."""
    general_unit = general / torch.linalg.norm(general)
    grad_unit = grad / torch.linalg.norm(grad)
    if torch.dot(grad_unit.flatten(), general_unit.flatten()) < 0:
        return grad - lambda_ * torch.dot(grad.flatten(), general_unit.flatten()) * general_unit
    return grad


def aligned_gradients(parameters, loss, general_loss, lambda_=1.0):
    """Set ``p.grad`` of each parameter needing a gradient to the gradient of
    ``loss`` projected against that of ``general_loss`` (per tensor, by
    :func:`project_conflicting`); parameters neither loss reaches keep
    ``grad`` None. Both losses may be scaled by the same positive factor (a
    ``GradScaler``): the projection is linear in ``grad`` and uses only the
    direction of ``general``. Under torchrun both gradients are averaged
    over the ranks before the projection (see the module docstring), so
    ``.grad`` needs no further averaging. Returns the number of tensors
    projected."""
    params = [p for p in parameters if p.requires_grad]
    general = torch.autograd.grad(general_loss, params, retain_graph=True, allow_unused=True)
    task = torch.autograd.grad(loss, params, allow_unused=True)
    # under torchrun: the global batch's gradients, before the projection
    general, task = average_tensors(list(general)), average_tensors(list(task))
    projected = 0
    for param, grad, reference in zip(params, task, general):
        if grad is None:
            param.grad = None
            continue
        if reference is not None:
            new = project_conflicting(grad, reference, lambda_)
            projected += int(new is not grad)
            grad = new
        param.grad = grad
    return projected
