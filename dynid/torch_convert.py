"""Conversion between :class:`~dynid.relunet.ReLUNet` and torch modules."""

from __future__ import annotations

import numpy as np

from dynid.errors import UnsupportedLayerError


def _module_class():
    import torch
    from torch import nn

    class MaskedReLUNet(nn.Module):
        """Torch twin of a ReLUNet: Linear layers, ReLU applied where the mask is True."""

        def __init__(self, linears, masks):
            super().__init__()
            self.linears = nn.ModuleList(linears)
            for i, m in enumerate(masks):
                self.register_buffer(f"mask{i}", torch.as_tensor(np.array(m, bool)))

        def forward(self, x):
            for i, lin in enumerate(self.linears):
                z = lin(x)
                x = torch.where(getattr(self, f"mask{i}"), torch.relu(z), z)
            return x

    return MaskedReLUNet


def relunet_to_module(net, dtype=None, device=None):
    import torch
    from torch import nn

    dtype = dtype or torch.float64
    linears = []
    for w, b in zip(net.weights, net.biases):
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=dtype, device=device)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(np.array(w), dtype=dtype))
            lin.bias.copy_(torch.tensor(np.array(b), dtype=dtype))
        linears.append(lin)
    mod = _module_class()(linears, net.relu)
    return mod.to(device) if device is not None else mod


def module_to_relunet(module, meta=None):
    """Linear layers each optionally followed by ReLU (``nn.Sequential``, nested Sequentials,
    or a module produced by :func:`relunet_to_module`)."""
    from torch import nn

    from dynid.relunet import ReLUNet

    if hasattr(module, "linears") and hasattr(module, "mask0"):
        ws = [lin.weight.detach().cpu().double().numpy() for lin in module.linears]
        bs = [_bias(lin) for lin in module.linears]
        ms = [getattr(module, f"mask{i}").cpu().numpy() for i in range(len(ws))]
        return ReLUNet(ws, bs, ms, meta)
    if hasattr(module, "to_relunet"):
        return module.to_relunet()
    layers = list(_flatten(module))
    ws, bs, ms = [], [], []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            ws.append(layer.weight.detach().cpu().double().numpy())
            bs.append(_bias(layer))
            ms.append(np.zeros(layer.out_features, bool))
        elif isinstance(layer, nn.ReLU):
            if not ws or ms[-1].any():
                raise UnsupportedLayerError(f"layer {i} (ReLU) must follow a Linear layer")
            ms[-1] = np.ones_like(ms[-1])
        elif isinstance(layer, (nn.Identity, nn.Flatten, nn.Dropout)):
            continue
        else:
            raise UnsupportedLayerError(f"layer {i} ({type(layer).__name__}) cannot be converted "
                                        "to a ReLUNet: use Linear, ReLU and Identity layers")
    if not ws:
        raise UnsupportedLayerError("module has no Linear layer to convert")
    return ReLUNet(ws, bs, ms, meta)


def _bias(lin):
    if lin.bias is None:
        return np.zeros(lin.out_features)
    return lin.bias.detach().cpu().double().numpy()


def _flatten(module):
    from torch import nn

    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _flatten(child)
    else:
        yield module
