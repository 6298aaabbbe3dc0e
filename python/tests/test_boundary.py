"""What crosses the boundary between Python and the engine: where ONNX Runtime is found, and a
panic inside actprm, which must become an exception with the interpreter going on."""

import os
import subprocess
import sys

from conftest import PRM800K_TEST, ROOT

SCORE = """
import os, sys
import pyarrow.parquet as pq
import actprm
table = pq.read_table(sys.argv[1]).slice(0, 8)
print("ORT", os.environ.get("ORT_DYLIB_PATH"))
print("ROWS", actprm.Model().score(table).num_rows)
"""


def python(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_onnx_runtime_is_found_in_the_environments_onnxruntime_wheel(tmp_path):
    # a deps folder with the default model's files but no ONNX Runtime: only the onnxruntime
    # wheel (the one ./setup.sh unpacked) on the Python path
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "models").symlink_to(ROOT / ".deps/models")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DYLIB_PATH"}
    env["ACTPRM_DEPS"] = str(deps)
    env["PYTHONPATH"] = str(ROOT / ".deps/ort")
    done = python(SCORE, str(PRM800K_TEST), env=env)
    assert done.returncode == 0, done.stderr
    wheel_lib = str(ROOT / ".deps/ort/onnxruntime/capi/libonnxruntime.so.1.31.1")
    assert f"ORT {wheel_lib}" in done.stdout, done.stdout
    assert "ROWS 8" in done.stdout
    # and without any ONNX Runtime, the error says where it looked and what to do
    env["PYTHONPATH"] = str(tmp_path)
    done = python(SCORE, str(PRM800K_TEST), env=env)
    assert done.returncode == 1
    assert "RuntimeError" in done.stderr and "ONNX Runtime library not found" in done.stderr
    assert "ORT_DYLIB_PATH" in done.stderr


PANIC = """
import sys
import pyarrow.parquet as pq
import actprm
table = pq.read_table(sys.argv[1]).slice(0, 4)
model = actprm.Model()
try:
    model.score(table)
except RuntimeError as e:
    print("FIRST", e)
try:
    model.score(table)
except RuntimeError as e:
    print("AGAIN", e)
print("FRESH", actprm.Model().score(table).num_rows)
"""


def test_a_panic_inside_actprm_is_a_runtime_error_and_the_interpreter_goes_on():
    env = dict(os.environ, ACTPRM_FAILPOINT="tokenise:1")  # the first tokenise call panics
    done = python(PANIC, str(PRM800K_TEST), env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "FIRST actprm crashed: failpoint tokenise hit (ACTPRM_FAILPOINT)", lines
    assert lines[1].startswith("AGAIN") and "crashed while scoring with this model" in lines[1]
    assert lines[2] == "FRESH 4"
