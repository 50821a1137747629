"""The projection of ``reproduce --full`` on one device from a device-check folder.

Reads the ``train_<slice>.json`` and ``exp_<stage>_<model>.json`` files that
``python -m benchmarks.device`` wrote into ``--out`` and projects each part of the full run:

* training: each slice's ``projected_full_train_s`` (one network of its preset at full scale)
  × the networks the full run trains with that preset (from the experiments' ``SCALES["full"]``;
  a network trained for two stages counts once);
* each stage's measurement: the piece's ``projected_full_scale_measure_s`` (its measured time ×
  digits × networks, with the rule in the JSON's ``scaling``).

Every network is assumed to cost what the measured one does, unless ``--weight part=factor`` gives
the factor to use instead of the network count (e.g. measured CPU ratios: ``--weight
train_table1_cnn3=13.8 table1=16``). A part the folder lacks can come from another run
(``--from``: folders or ``device_check.json`` files, searched in order; their
``device_check.json`` key numbers serve where the item JSON is gone); each row names its device
and the table warns when they differ. Writes ``projection.md`` and ``projection.json`` into the
folder and prints the table; the device check calls it at the end of a run.

    python -m benchmarks.projection results/device_check [--from docs/device_runs/2026-11-26-h200] \
        [--weight table1=16 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

#: each training slice of benchmarks.device.plan.SLICES -> (its network, the stages whose full-scale networks
#: are trained with its preset; a network two stages share is trained once)
SLICE_NETWORKS = {
    "table1_cnn3": ("cnn3", ("table1", "appendix")),  # 10-class table networks
    "table2_cnn3_adv": ("cnn3", ("table2",)),  # binary, PGD-ℓ∞
    "fig2_fig5_alexnet": ("alexnet", ("fig2", "fig5")),  # standard training
    "fig3_fig4_vgg11_adv": ("vgg11", ("fig3", "fig4")),  # binary, PGD-ℓ∞
    "fig5_alexnet_adv": ("alexnet", ("fig5",)),  # 10-class, PGD-ℓ∞
}
STAGES = ("table1", "table2", "appendix", "fig5", "fig2", "fig3", "fig4")


def full_networks() -> dict:
    """``{"train_<slice>": [network, ...], "<stage>": [network, ...]}``: the distinct networks the full
    run trains with each slice's preset, and each stage's full-scale networks."""
    from jaxdyn.experiments import load  # noqa: PLC0415 (imports jax; the device check's runner imports this without)

    stage = {st: list(load(st).SCALES["full"]["models"]) for st in STAGES}
    train = {f"train_{key}": sorted({m for st in uses for m in stage[st]}) for key, (_, uses) in SLICE_NETWORKS.items()}
    return {**train, **stage}


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _source(path):
    """``(folder or None, {item: JSON-like record}, device)`` of a device-check folder or summary file."""
    path = Path(path)
    summary = _read(path if path.is_file() else path / "device_check.json") or {}
    items = {r["name"]: dict(r.get("key_numbers") or {}, device=summary.get("device"), _from=str(path))
             for r in summary.get("items", []) if r.get("status") == "ok"}
    return (None if path.is_file() else path), items, summary.get("device")


def _lookup(sources, stem: str):
    """The first item JSON named ``stem`` (``exp_table1`` matches ``exp_table1_cnn3``) among ``sources``:
    the file in a folder, else the key numbers in that run's summary."""
    for folder, items, device in sources:
        if folder is not None:
            found = sorted(folder.glob(f"{stem}.json")) or sorted(folder.glob(f"{stem}_*.json"))
            js = _read(found[0]) if found else None
            if js is not None:
                return dict(js, device=js.get("device") or device, _from=str(found[0]))
        for name, rec in items.items():
            if name == stem or name.startswith(stem + "_"):
                return rec
    return None


def project(folder, weights: dict | None = None, networks: dict | None = None, more=()) -> dict:
    """The projection rows and total of device-check folder ``folder`` (and ``more`` runs for the
    parts it lacks; see the module docstring)."""
    folder, weights = Path(folder), dict(weights or {})
    networks = full_networks() if networks is None else networks
    summary = _read(folder / "device_check.json") or {}
    sources = [_source(folder)] + [_source(m) for m in more]
    rows = []
    for key, (model, _) in SLICE_NETWORKS.items():
        nets = networks.get(f"train_{key}", [])
        js = _lookup(sources, f"train_{key}")
        per = js.get("projected_full_train_s") if js else None
        factor = weights.get(f"train_{key}", len(nets))
        rows.append(dict(part=f"train_{key}", kind="training", measured=js is not None and per is not None,
                         network=model, per_network_s=per,
                         factor=factor, factor_source="--weight" if f"train_{key}" in weights else "networks",
                         networks=nets,
                         basis=(f"{js['steps_per_s']:.4g} steps/s → {js.get('full_steps', 'all')} steps "
                                "+ start-up + evaluations") if js and js.get("steps_per_s") else "not measured",
                         source=js.get("_from") if js else None,
                         projected_s=per * factor if per is not None else None,
                         device=js.get("device") if js else None))
    for stage in STAGES:
        js = _lookup(sources, f"exp_{stage}")
        per = js.get("projected_per_network_s") if js else None
        if js and per is None and js.get("projected_full_scale_measure_s") is not None:  # the first run's format
            per = js["projected_full_scale_measure_s"]
        nets = js.get("networks_full_scale") if js and js.get("networks_full_scale") else networks.get(stage, [])
        factor = weights.get(stage, len(nets) if nets else 1)
        rows.append(dict(part=stage, kind="measurement", measured=per is not None,
                         network=js.get("model") if js else None, per_network_s=per, factor=factor,
                         factor_source="--weight" if stage in weights else "networks", networks=nets,
                         basis=(f"{js['experiment_time_s']:.4g} s on {js.get('n_samples', '?')} of "
                                f"{js.get('n_samples_full_scale', '?')} digits"
                                + (f" (compile {js['compile_s']:.3g} s, once)"
                                   if js.get("compile_s") is not None else "")
                                + (f" + tracker {js['tracker_s']:.3g} s" if js.get("tracker_s") else ""))
                         if js and js.get("experiment_time_s") is not None else "not measured",
                         scaling=js.get("scaling") if js else None, source=js.get("_from") if js else None,
                         projected_s=per * factor if per is not None else None,
                         device=js.get("device") if js else None))
    done = [r for r in rows if r["projected_s"] is not None]
    total = sum(r["projected_s"] for r in done)
    devices = sorted({str(r["device"]) for r in done if r["device"]})
    return dict(folder=str(folder), device=summary.get("device") or (devices[0] if devices else None),
                devices=devices, date=summary.get("date"), tiny=summary.get("tiny"), rows=rows, total_s=total,
                total_h=total / 3600,
                missing=[r["part"] for r in rows if r["projected_s"] is None],
                ignores=("every network costs as the measured one unless --weight says otherwise (compilation "
                         "included); fixed per-network work other than compilation is scaled with the digits (an "
                         "overestimate); the stages' plots, claims and the report (seconds)"))


def _f(v, nd=4):
    return "–" if v is None else f"{v:.{nd}g}"


def markdown(p: dict) -> str:
    lines = [f"Projection of `reproduce --full` on one **{p['device']}** from the device check of "
             f"{p['date'] or '(no summary)'} "
             f"({'tiny CPU smoke run: the numbers mean nothing' if p['tiny'] else 'full-scale settings'}), "
             f"`python -m benchmarks.projection {p['folder']}`:", "",
             "| part | measured network | device | basis | per network (s) | × networks | projected (min) |",
             "|---|---|---|---|---|---|---|"]
    for r in p["rows"]:
        nets = f"{_f(r['factor'], 3)}" + (" (weight)" if r["factor_source"] == "--weight" else
                                           f" ({', '.join(r['networks'])})" if r["networks"] else "")
        proj = _f(r["projected_s"] / 60, 3) if r["projected_s"] is not None else "**not measured**"
        lines.append(f"| {r['part']} | {r['network'] or '–'} | {r['device'] or '–'} | {r['basis']} | "
                     f"{_f(r['per_network_s'])} | {nets} | {proj} |")
    if len(p["devices"]) > 1:
        lines += ["", f"**Warning: the parts were measured on different devices ({', '.join(p['devices'])}).**"]
    lines += ["", f"**Total: {p['total_s'] / 60:.0f} min = {p['total_h']:.2f} h** on one {p['device']}"
              + (f"; not measured (left out of the total): {', '.join(p['missing'])}" if p["missing"] else "") + ".",
              "", f"Ignored: {p['ignores']}."]
    return "\n".join(lines) + "\n"


def write(folder, weights: dict | None = None, more=()) -> dict:
    """Write ``projection.json`` and ``projection.md`` into ``folder``; returns the projection."""
    p = project(folder, weights, more=more)
    for name, text in (("projection.json", json.dumps(p, indent=2, default=str)), ("projection.md", markdown(p))):
        tmp = Path(folder) / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, Path(folder) / name)
    return p


def _weight(s: str):
    k, _, v = s.partition("=")
    try:
        return k, float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--weight wants part=factor, got {s!r}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.projection", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the device check's --out folder")
    ap.add_argument("--weight", type=_weight, nargs="*", default=[],
                    help="part=factor: use factor (Σ network costs in units of the measured one) for that part")
    ap.add_argument("--from", dest="more", type=Path, nargs="*", default=[],
                    help="other device-check folders or device_check.json files for the parts the folder lacks")
    a = ap.parse_args(argv)
    for f in [a.folder, *a.more]:
        if not (f.is_dir() or (f in a.more and f.is_file())):
            ap.error(f"{f} is not a device-check folder")
    weights = dict(a.weight)
    unknown = sorted(set(weights) - {f"train_{k}" for k in SLICE_NETWORKS} - set(STAGES))
    if unknown:
        ap.error(f"--weight: unknown parts {unknown}")
    print(markdown(write(a.folder, weights, more=a.more)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
