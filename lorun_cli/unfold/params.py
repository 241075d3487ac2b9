"""Parameter and byte accounting for any strategy (what the paper's "Params" columns count)."""

from __future__ import annotations

from torch import nn

from .. import lora


def _numel(params) -> int:
    return sum(p.numel() for p in params)


def param_report(model: nn.Module) -> dict[str, int]:
    """Total / trainable / stored parameters and bytes of a :class:`DUN`.

    - ``total``: every parameter of the network (frozen backbone included);
    - ``trainable``: those with ``requires_grad`` (what the current phase optimises);
    - ``stored``: what the checkpoint files hold: parameters + persistent buffers;
    - ``setting``: what one more setting (another CS ratio, another task variant) costs to store —
      for lorunK the adapters + per-stage scalars + operator parameters, otherwise the whole model;
    - ``adapter`` / ``backbone``: the LoRA part and the frozen part (0 where not applicable);
    - ``operator``: learned degradation parameters (the CS sampling matrix Φ, or its low-rank update when Φ
      is derived from the backbone's), counted in the totals above;
      ``network`` = ``stored - operator`` is the unfolding network alone (how DUN papers count).
    ``*_bytes`` are the same counts at each tensor's element size.
    """
    # a Φ derived from the backbone's (an adapter's ``--phi lora|frozen``) is rebuilt on load, never stored
    params = [p for p in model.parameters() if not getattr(p, "_lorun_derived", False)]
    buffers = [b for name, b in model.named_buffers() if name.rsplit(".", 1)[-1] not in ("_merged",)]
    adapters = [p for _, layer in lora.lora_layers(model) for p in (layer.lora_A, layer.lora_B)]
    adapter_ids = {id(p) for p in adapters}
    backbone = [p for p in params if not p.requires_grad and id(p) not in adapter_ids]
    is_lorun = bool(adapters)
    setting = [p for p in params if id(p) in adapter_ids or p.requires_grad] if is_lorun else params

    def nbytes(ts) -> int:
        return sum(t.numel() * t.element_size() for t in ts)

    op = getattr(model, "op", None)
    op_params = _numel(p for p in op.parameters() if not getattr(p, "_lorun_derived", False)) \
        if isinstance(op, nn.Module) else 0
    return {
        "operator": op_params,
        "network": _numel(params) + _numel(buffers) - op_params,
        "total": _numel(params),
        "trainable": _numel(p for p in params if p.requires_grad),
        "stored": _numel(params) + _numel(buffers),
        "setting": _numel(setting),
        "adapter": _numel(adapters),
        "backbone": _numel(backbone) if is_lorun else 0,
        "total_bytes": nbytes(params),
        "stored_bytes": nbytes(params) + nbytes(buffers),
        "setting_bytes": nbytes(setting),
    }
