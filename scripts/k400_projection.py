"""The "Kinetics-400 on one GPU" table of docs/performance.md, from the rates it states, through the projection of
`vifi bench e2e` (vifi/bench/e2e.py). Every input is either measured (device, date in docs/performance.md) or an
estimate named as such there; change them here when a GPU run measures them.

    python scripts/k400_projection.py
"""

from vifi.bench.e2e import MeasuredRates, project

WORKERS = 15  # a 16-core host: one core for the main process (data.num_workers auto)
# Model, NVIDIA H200, torch 2.11, 2026-11-30, compiled ViT-B/16 bf16 (docs/performance.md "Figures"): 108.7 clips/s
# at 32 frames = 3478 frames/s in training, 338.8 clips/s = 10842 frames/s in evaluation. Estimate: the same
# frames/s at 16 frames (not measured).
MODEL_TRAIN_FPS, MODEL_EVAL_FPS = 108.7 * 32, 338.8 * 32
# Data, frames per CPU-second of one decoding process on this 2-core CPU container (decord, 224 crop),
# `vifi bench data --workers 0 --clips 12 --frames T [--prepared]`, 2026-12-06; x WORKERS = estimate for 16 cores.
PER_CORE = {("raw", 16): 63.9, ("raw", 32): 102.2, ("mjpeg", 16): 119.8, ("mjpeg", 32): 141.9}
STARTUP_S = 300.0  # estimate: model build, worker start-up, compilation of the training and evaluation graphs
CHECKPOINT_S = 2.0  # estimate: the host copy one checkpoint holds the loop up (the write is in the background)
VAL_VIDEOS, TRAIN_VIDEOS = 19877, 240000

RECIPES = {  # name: frames, epochs, global batch, eval_every, final (clips, crops)
    "k400-supervised": (16, 30, 512, 1, (4, 3)),
    "k400": (32, 10, 256, 1, (1, 1)),
}


def rows():
    for name, (t, epochs, batch, every, (clips, crops)) in RECIPES.items():
        steps = TRAIN_VIDEOS // batch
        for data in ("raw", "mjpeg", "gpu"):
            data_fps = float("inf") if data == "gpu" else WORKERS * PER_CORE[(data, t)]
            train_fps = min(MODEL_TRAIN_FPS, data_fps)
            eval_vps = min(MODEL_EVAL_FPS, data_fps) / t
            # final views: a video decoded once for all its clips; estimate its decode as one clip of clips*t frames
            # (raw: the T=32 rate, decoding through the GOPs dominates; mjpeg: per frame)
            views = clips * crops
            if data == "gpu":
                final_vps = MODEL_EVAL_FPS / (t * views)
            else:
                per_video_frames = clips * t
                rate = WORKERS * PER_CORE[(data, 32 if clips > 1 else t)]
                final_vps = min(MODEL_EVAL_FPS / (t * views), rate / per_video_frames)
            rates = MeasuredRates(step_s=batch * t / train_fps, eval_videos_per_s=eval_vps,
                                  final_eval_videos_per_s=final_vps, startup_s=STARTUP_S, checkpoint_s=CHECKPOINT_S)
            out = project(rates, epochs=epochs, steps_per_epoch=steps, eval_every=every, val_videos=VAL_VIDEOS)
            p = out["projection"]
            yield (name, data, round(train_fps), round(p["train_h"], 2), round(p["eval_h"], 2),
                   round(p["final_eval_h"], 2), round(p["startup_h"] + p["checkpoint_h"], 2),
                   round(out["projected_hours"], 1))


if __name__ == "__main__":
    print("| recipe | data path | train frames/s | train h | between-epoch eval h | final eval h | start-up + "
          "checkpoints h | **total h** |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows():
        print("| " + " | ".join(map(str, r[:-1])) + f" | **{r[-1]}** |")
