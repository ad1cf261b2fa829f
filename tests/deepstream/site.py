"""A site config for the DeepStream tests: two model groups, files and a camera."""

from __future__ import annotations

from pathlib import Path

from appliance.config.loader import load_config
from appliance.config.schema import ApplianceConfig


def site_config(tmp_path: Path, extra: str = "", streams_on_line: int = 2) -> ApplianceConfig:
    (tmp_path / "models").mkdir(exist_ok=True)
    for name, labels in (("defects", "vial\ncrack\nchip\n"), ("ppe", "person\nhelmet\n")):
        (tmp_path / "models" / f"{name}.onnx").write_bytes(f"onnx bytes of {name}".encode())
        (tmp_path / "models" / f"{name}.labels").write_text(labels)
    line_sources = ""
    for index in range(streams_on_line):
        (tmp_path / f"line-{index}.mp4").write_bytes(b"clip")
        line_sources += f"""
  - id: line-{index}
    uri: file://line-{index}.mp4
    loop: {"true" if index == 0 else "false"}
    models: [defects]
"""
    (tmp_path / "site.yaml").write_text(f"""\
backend: deepstream
models:
  - {{id: defects, onnx: models/defects.onnx, labels: models/defects.labels, input: {{width: 320, height: 320}}}}
  - {{id: ppe, onnx: models/ppe.onnx, labels: models/ppe.labels, input: {{width: 320, height: 320}}}}
sources:{line_sources}
  - id: cleanroom
    uri: rtsp://127.0.0.1:8554/cam
    models: [ppe, defects]
engines:
  cache_dir: engines
  max_batch: 4
deepstream:
  config_dir: generated
{extra}""")
    return load_config(tmp_path / "site.yaml")
