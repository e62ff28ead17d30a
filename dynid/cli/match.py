"""``dynid prune`` and ``dynid match``: prune a model file; certify how far two models differ
(and optionally calibrate one to the other)."""

from __future__ import annotations

from dynid.cli.common import (add_box_options, add_input, add_json_option, add_norm_option,
                              add_output, add_solver_options, fraction_float, nonneg_float,
                              nonneg_int, positive_float, write_json)


def register(sub) -> None:
    p = sub.add_parser("prune", help="prune a model (magnitude or whole units), optionally "
                       "fine-tune, write a normal model file",
                       description="Prune MODEL and write the result (same shape, metadata "
                       "'pruned' with the sparsity report). Example: dynid prune model.h5 "
                       "--sparsity 0.5 --finetune data.nc --out pruned.h5")
    add_input(p, "model", help="model file (.h5)")
    p.add_argument("--sparsity", type=fraction_float, required=True,
                   help="fraction of weights (or of hidden units with --structured) to remove")
    p.add_argument("--structured", action="store_true", help="remove whole hidden units")
    p.add_argument("--per-layer", action="store_true",
                   help="the same fraction in every layer (default: one global ranking)")
    add_input(p, "--finetune", metavar="DATA", default=None,
                   help="dataset (.nc) to fine-tune on with the zero pattern fixed")
    p.add_argument("--epochs", type=nonneg_int, default=20,
                   help="fine-tuning epochs (default 20)")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="fine-tuning learning rate (default 1e-3)")
    p.add_argument("--simplify", action="store_true",
                   help="drop dead units before saving (smaller file and MIP, new shape)")
    add_output(p, "--out", required=True, help="output model file (.h5)")
    add_json_option(p)
    p.set_defaults(func=_prune)

    m = sub.add_parser("match", help="certify the maximum deviation between two models on a "
                       "box; optionally calibrate an affine map between their outputs",
                       description="Certified max ||A(x) - B(x)|| over the box "
                       "(epsilon-equivalence). Example: dynid match a.h5 b.h5 --lo 0 0 --hi 4 5")
    add_input(m, "model_a", help="first model file")
    add_input(m, "model_b", help="second model file")
    add_box_options(m)
    add_norm_option(m)
    m.add_argument("--method", choices=["ours", "naive"], default="ours",
                   help="encoding: ours (difference bounds, input splitting) or naive "
                        "(interval big-M on both networks)")
    m.add_argument("--calibrate", choices=["affine"], default=None,
                   help="fit T minimising max ||T(A(x)) - B(x)||_inf and certify the residual")
    m.add_argument("--eps", type=nonneg_float, default=None,
                   help="tolerance: report whether the models are eps-equivalent")
    add_solver_options(m)
    add_json_option(m)
    m.set_defaults(func=_match)


def _prune(args) -> int:
    from dynid.modelfile import load_model, save_model
    from dynid.prune import prune

    net = load_model(args.model)
    out = prune(net, args.sparsity, structured=args.structured, per_layer=args.per_layer,
                finetune_data=args.finetune, epochs=args.epochs, lr=args.lr, log=print)
    if args.simplify:
        out = out.simplify()
    save_model(args.out, out)
    info = out.meta["pruned"]
    total = info["report"][-1]
    print(f"pruned {args.model} -> {args.out}: {info['method']} ({info['scope']}), "
          f"{total['zeros']}/{total['weights']} weights zero, units alive "
          f"{total['units_alive']}/{total['units']}, widths {out.widths}")
    if "loss_after_finetune" in info:
        print(f"one-step RMSE before/after fine-tuning: {info['loss_before_finetune']:.4g} / "
              f"{info['loss_after_finetune']:.4g}")
    write_json(info, args.json)
    return 0


def _match(args) -> int:
    from dynid.modelfile import load_model

    a = load_model(args.model_a)
    b = load_model(args.model_b)
    if args.calibrate:
        from dynid.certify.matching import calibrate

        res = calibrate(a, b, args.lo, args.hi, kind=args.calibrate, method=args.method,
                        solver=args.solver, time_limit=args.time_limit, log=print)
        print(res.summary())
        print(f"A = {res.A.tolist()}\nb = {res.b.tolist()}")
        write_json(res, args.json)
        return 0
    from dynid.certify.equivalence import equivalence

    cert = equivalence(a, b, args.lo, args.hi, norm=args.norm, method=args.method,
                       solver=args.solver, time_limit=args.time_limit, eps=args.eps,
                       threads=args.threads)
    print(cert.summary())
    print(f"certified max deviation ({cert.info['norm']}-norm): {cert.bound:.6g}; worst input "
          f"{[round(float(v), 6) for v in cert.witness['x']]} deviates by {cert.value:.6g}")
    write_json(cert, args.json)
    return 0
