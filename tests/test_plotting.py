"""The loss curve PNG drawn from a workdir's metrics."""

import json
import os

from mdlm_jax import monitoring, plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_loss_curve_is_a_png_of_the_logged_metrics(tmp_path):
    writer = monitoring.MetricsWriter(str(tmp_path))
    for step, loss in [(1, 5.5), (10, 3.1), (20, 2.4)]:
        writer.write(step, {"loss": loss})
    writer.write(20, {"nats_per_token": 2.0, "bits_per_token": 2.885}, kind="eval")
    writer.close()
    path = plotting.save_loss_curve(str(tmp_path))
    assert path == os.path.join(str(tmp_path), plotting.LOSS_CURVE)
    width, height = _png_size(path)
    assert width > 300 and height > 200
    assert [p for p in os.listdir(tmp_path) if ".tmp" in p] == []


def test_redrawing_replaces_the_picture_and_nothing_logged_draws_nothing(tmp_path):
    assert plotting.save_loss_curve(str(tmp_path)) is None
    assert not os.path.exists(tmp_path / plotting.LOSS_CURVE)
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 1, "kind": "train", "time": 0.0, "loss": 4.0}) + "\n")
    first = plotting.save_loss_curve(str(tmp_path), str(tmp_path / "a.png"))
    size_one = os.path.getsize(first)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        for step in range(2, 50):
            f.write(json.dumps({"step": step, "kind": "train", "time": 0.0,
                                "loss": 4.0 / step ** 0.5}) + "\n")
    again = plotting.save_loss_curve(str(tmp_path), str(tmp_path / "a.png"))
    assert again == first and os.path.getsize(again) != size_one
