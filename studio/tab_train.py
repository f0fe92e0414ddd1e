"""Train: start / stop / resume the trainer process, live losses, the latest sample, FVD, snapshots."""


import time
from pathlib import Path

from studio.backend import Backend
from studio.common import number_input, ui_errors
from studio.inputs import StudioError, number
from studio.training_runs import (
    PRESET_RESOLUTION,
    latest_sample,
    list_runs,
    read_metrics,
    read_stats,
    sample_strip,
    snapshots,
)
from studio.uploads import extract_zip

LOSS_KEYS = ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty")


def prepare_upload(backend: Backend, upload, resolution: int, session: str = "local", progress=None) -> str:
    """Unpack an uploaded zip of videos and prepare it as a frames dataset; returns the dataset path."""
    from training.prepare import PrepareConfig, prepare

    work = backend.session_dir(session) / f"upload-{time.strftime('%H%M%S')}"
    src = extract_zip(upload, work / "src")
    dst = backend.training.outdir / "datasets" / f"{Path(str(upload)).stem[:40]}-{resolution}-{time.strftime('%H%M%S')}"

    def callback(i, n, name):
        if progress is not None:
            progress(i / max(n, 1), desc=f"preparing {name} ({i}/{n})")

    summary = prepare(str(src), str(dst), PrepareConfig(resolution=int(resolution)), callback)
    return str(dst) if summary.kept else ""


def start(backend: Backend, data: str, upload, preset: str, resolution, kimg, gpus, batch=None, kimg_per_tick=None,
          snapshot_ticks=None, sample_ticks=None, session: str = "local", progress=None, init: str | None = None,
          fvd_ticks=None, fvd_videos=None) -> str:
    """Start a new run; returns the status line.

    `init`: fine-tune from these weights (a .pkl released with the paper, a .safetensors checkpoint, or
    "loaded" for the model loaded in the studio): the run takes that model's config instead of `preset`.
    `fvd_ticks`: FVD_16 of G_ema every this many ticks (0 / blank: none), on `fvd_videos` videos.
    """
    init_path = fine_tune_source(backend, init)
    if init_path is None and preset not in PRESET_RESOLUTION:
        raise StudioError(f"unknown preset {preset!r}")
    res = _resolution(backend, preset, resolution, init_path)
    if upload:
        data = prepare_upload(backend, upload, res, session, progress)
    data = (data or "").strip()
    if not data:
        raise StudioError("give a dataset path or upload a zip of videos")
    check_dataset(data, res)
    ui = {"batch": _int(batch), "kimg_per_tick": _num(kimg_per_tick), "snapshot_ticks": _int(snapshot_ticks),
          "sample_ticks": _int(sample_ticks), "device": backend.device}
    if _int(fvd_ticks):
        ui.update(metrics="fvd16", metrics_ticks=_int(fvd_ticks), metrics_num_videos=_int(fvd_videos))
    extra = {**backend.train_defaults, **{k: v for k, v in ui.items() if v is not None}}
    kimg = number(kimg, "length (kimg)", 0.001, 1e6)
    gpus = number(gpus, "GPUs", 1, 64, integer=True)
    status = backend.training.start(data, preset, kimg, gpus, resume=init_path, extra=extra)
    return status.message


def check_dataset(data: str, resolution: int) -> None:
    """Open the dataset as the trainer will (training.dataset.VideoDataset) and decode one frame, before any
    run folder exists: a bad path, a folder without videos or a broken file is a message, not a failed run."""
    from training.dataset import DatasetError, VideoDataset

    try:
        ds = VideoDataset(data, resolution=int(resolution))
        ds.read_frames(0, [0])
    except DatasetError as exc:
        raise StudioError(f"the dataset cannot be used for training: {exc}") from None
    except (OSError, ValueError) as exc:  # unreadable folders (permissions), odd files
        raise StudioError(f"the dataset cannot be read: {exc}") from None


def fine_tune_source(backend: Backend, init: str | None) -> str | None:
    """The weights file a new run starts from, or None for random initialisation."""
    from training.snapshot import is_weights_file

    init = (init or "").strip()
    if not init:
        return None
    if init.lower() == "loaded":
        if backend.info.random_weights:
            raise StudioError("the studio runs on random weights: load a checkpoint (Model tab) to fine-tune it")
        init = backend.info.source
    if not Path(init).is_file():
        raise StudioError(f"weights to fine-tune not found: {init}")
    if not is_weights_file(init):
        raise StudioError(f"{Path(init).name}: fine-tuning starts from a .pkl released with the paper or a "
                          ".safetensors checkpoint")
    return init


def _resolution(backend: Backend, preset: str, resolution, init_path: str | None) -> int:
    """The resolution the data is prepared at: the preset's, or the fine-tuned model's."""
    if init_path is not None:
        from training.snapshot import weights_config

        try:
            want = weights_config(init_path).img_resolution
        except Exception as exc:  # a corrupt or foreign file: say which, keep serving
            raise StudioError(f"cannot read the model config of {Path(init_path).name}: {exc}") from exc
        what = f"{Path(init_path).name} generates"
    else:
        want, what = PRESET_RESOLUTION[preset], f"the {preset} preset trains at"
    if resolution in (None, "", "auto"):
        return want
    if int(resolution) != want:
        raise StudioError(f"{what} {want} px; pick that resolution (or 'auto')")
    return int(resolution)


def resume(backend: Backend, run: str | None, kimg=None, gpus=1) -> str:
    spec = (run or "").strip() or "latest"
    kimg = number(kimg, "length (kimg)", 0, 1e6, default=0.0) or None  # blank / 0: the run's own length
    gpus = number(gpus, "GPUs", 1, 64, integer=True, default=1)
    return backend.training.start(None, resume=spec, total_kimg=kimg, gpus=gpus,
                                  extra={**backend.train_defaults, "device": backend.device}).message


def stop(backend: Backend) -> str:
    return backend.training.stop().message


def refresh(backend: Backend, run: str | None = None) -> dict:
    """Everything the tab shows about the current (or chosen) run, read from its folder."""
    import pandas as pd

    st = backend.training.status()
    run_dir = st.run_dir or (run or None)
    stats = read_stats(run_dir)
    rows = [{"kimg": s["kimg"], "value": s[k], "loss": k.split("/", 1)[1]} for s in stats for k in LOSS_KEYS
            if k in s and s[k] == s[k]]
    losses = pd.DataFrame(rows, columns=["kimg", "value", "loss"])
    last = stats[-1] if stats else {}
    metrics = read_metrics(run_dir)
    fvd = "\n".join(f"- {m.get('file')}: " + ", ".join(_metric_text(m, k) for k, v in m.items()
                                                      if isinstance(v, (int, float)) and ("fvd" in k or "fid" in k))
                    for m in metrics) or ("No FVD computed for this run yet (set 'FVD_16 every N ticks' when "
                                          "starting, or run `python -m training.metrics ... --out "
                                          "RUN/metrics-KIMG.json`).")
    progress = (f" · tick {last.get('tick')} · {last.get('kimg', 0):.3f} kimg · {last.get('sec_per_kimg', 0):.1f} "
                f"s/kimg · augment p {last.get('augment_p', 0):.3f}") if last else ""
    total = backend.training.total_kimg
    if last and st.state == "running" and total and last.get("sec_per_kimg"):
        left = max(0.0, total - float(last.get("kimg", 0))) * float(last["sec_per_kimg"])
        progress += f" · about {_duration(left)} left for {total:g} kimg at this speed"
    log_tail = "\n".join(backend.training.log_text(6000).splitlines()[-30:])
    points = [{"kimg": m["kimg"], "value": v, "metric": k} for m in metrics if isinstance(m.get("kimg"), (int, float))
              for k, v in m.items() if isinstance(v, float) and ("fvd" in k or "fid" in k)]
    return {"status": f"**{st.state}**: {st.message}{progress}", "losses": losses,
            "metrics": pd.DataFrame(points, columns=["kimg", "value", "metric"]),
            "sample": latest_sample(run_dir), "strip": sample_strip(run_dir), "fvd": fvd,
            "snapshots": snapshots(run_dir), "log": log_tail, "failed": st.state == "failed", "run_dir": run_dir}


def _metric_text(m: dict, name: str) -> str:
    """'fvd16 3116.10 +- 40.20 (floor 1371.00)': the mean, its seed spread and the real-vs-real floor."""
    text = f"{name} {m[name]:.2f}"
    std, floor = (m.get("std") or {}).get(name), (m.get("floor") or {}).get(name)
    text += f" +- {std:.2f}" if isinstance(std, float) else ""
    return text + (f" (floor {floor:.2f})" if isinstance(floor, float) else "")


def _duration(seconds: float) -> str:
    """'3 d 4 h', '2 h 5 min', '7 min', '40 s'."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min" if s >= 60 else f"{s} s"


def _int(v):
    """Optional whole-number field: blank / 0 -> None (the trainer's default)."""
    return number(v, "an advanced setting", 0, 1e9, integer=True, default=0) or None


def _num(v):
    return number(v, "an advanced setting", 0, 1e9, default=0.0) or None


def build(backend: Backend, on_model_loaded) -> dict:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            data = gr.Textbox(label="Dataset path", placeholder="frames folder, zip, or folder of videos",
                              elem_id="train-data")
            upload = gr.File(label="…or upload a zip of videos (prepared on the fly)", file_types=[".zip"])
            with gr.Row():
                preset = gr.Dropdown(list(PRESET_RESOLUTION), value="small", label="Preset", elem_id="train-preset")
                resolution = gr.Dropdown(["auto", "16", "64", "256"], value="auto", label="Resolution")
            with gr.Row():
                kimg = number_input(1000, "Length (kimg)", minimum=0)
                gpus = number_input(1, "GPUs", precision=0, minimum=1)
            with gr.Accordion("Advanced", open=False):
                batch = number_input(None, "Batch (blank: default)", precision=0)
                tick = number_input(None, "kimg per tick")
                snap = number_input(None, "Snapshot every N ticks", precision=0)
                sample = number_input(None, "Sample every N ticks", precision=0)
                init = gr.Textbox("", label="Fine-tune from (optional)", placeholder="a .pkl released with the "
                                  "paper, a .safetensors checkpoint, or 'loaded' (the studio's model)")
                with gr.Row():
                    fvd_ticks = number_input(0, "FVD_16 every N ticks (0: off)", precision=0, minimum=0)
                    fvd_videos = number_input(0, "FVD videos (0: the protocol's 2048)", precision=0, minimum=0)
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="train-start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
            with gr.Row():
                run = gr.Dropdown(list_runs(backend.training.outdir), label="Run to resume (blank: latest)",
                                  allow_custom_value=True)
                resume_btn = gr.Button("Resume")
        with gr.Column(scale=2, min_width=300):
            status = gr.Markdown("No training run started from this studio.", elem_id="train-status")
            with gr.Row():
                losses = gr.LinePlot(x="kimg", y="value", color="loss", title="Losses (G, D, R1)", height=240)
                metric_plot = gr.LinePlot(x="kimg", y="value", color="metric", title="FVD / FID", height=240)
            sample_video = gr.Video(label="Latest samples", autoplay=True, loop=True)
            strip = gr.Gallery(label="Samples by tick (first frame of each grid)", columns=6, height=140,
                               allow_preview=True, elem_id="train-strip")
            fvd = gr.Markdown()
            with gr.Row():
                snaps = gr.Dropdown([], label="Snapshots", allow_custom_value=False)
                load_btn = gr.Button("Load in studio")
            log_box = gr.Textbox(label="Trainer log (tail)", lines=6, max_lines=12, interactive=False)

    @ui_errors
    def on_start(d, u, p, r, k, g, b, t, sn, sa, ini, ft, fv, request: gr.Request, progress=gr.Progress()):
        return start(backend, d, u, p, r, k, g, b, t, sn, sa, getattr(request, "session_hash", "local"), progress,
                     init=ini, fvd_ticks=ft, fvd_videos=fv)

    start_btn.click(on_start, [data, upload, preset, resolution, kimg, gpus, batch, tick, snap, sample, init,
                               fvd_ticks, fvd_videos], status,
                    api_name="train_start", concurrency_id="light")
    stop_btn.click(ui_errors(lambda: stop(backend)), None, status, api_name="train_stop", concurrency_id="light")
    resume_btn.click(ui_errors(lambda r, k, g: resume(backend, r, k, g)), [run, kimg, gpus], status,
                     api_name="train_resume", concurrency_id="light")

    shown = gr.State({})  # per browser session: what its page already shows

    @ui_errors
    def on_refresh(r, last):
        out = refresh(backend, r)
        last = dict(last or {})
        sample_update = strip_update = gr.skip()
        if out["sample"] != last.get("sample"):  # do not restart the player every poll
            last["sample"] = sample_update = out["sample"]
        strip_key = [out["run_dir"], *(c for _, c in out["strip"])]
        if strip_key != last.get("strip"):  # nor redraw an unchanged strip
            last["strip"], strip_update = strip_key, out["strip"]
        return (out["status"], out["losses"], out["metrics"], sample_update, strip_update, out["fvd"],
                gr.Dropdown(choices=out["snapshots"], value=out["snapshots"][0] if out["snapshots"] else None),
                out["log"], last)

    timer = gr.Timer(2.0)
    timer.tick(on_refresh, [run, shown], [status, losses, metric_plot, sample_video, strip, fvd, snaps, log_box,
                                          shown], api_name="train_refresh", show_progress="hidden",
               concurrency_id="light")

    @ui_errors
    def on_load(path):
        if not path:
            raise StudioError("no snapshot selected")
        backend.load(path)
        return on_model_loaded()

    return {"load_btn": load_btn, "snaps": snaps, "on_load": on_load}
