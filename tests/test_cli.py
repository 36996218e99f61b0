"""The command line, run as users run it: python -m cnnkit (same program as `cnnkit`)."""
import subprocess
import sys

from helpers import child_env


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True, text=True, env=child_env(),
                          timeout=timeout)


def test_summary_lenet5():
    r = run("summary", "lenet5")
    assert r.returncode == 0, r.stderr
    assert "Total params: 61,706" in r.stdout and "(None, 6, 28, 28)" in r.stdout


def test_train_on_the_bundled_sample_then_evaluate_the_saved_model(tmp_path):
    path = tmp_path / "lenet.cnnkit"
    r = run("train", "--epochs", "2", "--verbose", "2", "--seed", "0", "--threads", "2", "--save", str(path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Training lenet5 on mnist_sample: 2000 images, 2 epochs" in out
    assert out.count("Epoch ") == 2 and "\r" not in out  # verbose 2: a line per epoch
    acc = float(out.split("Test accuracy: ")[1].split()[0])
    assert acc > 0.7, out  # 2 epochs of 2,000 images
    assert path.exists()
    r = run("evaluate", str(path))
    assert r.returncode == 0, r.stderr
    assert f"accuracy: {acc:.4f}" in r.stdout and "500 test images" in r.stdout


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path):
    r = run("train", "--dataset", "mnist", "--data", str(tmp_path / "nowhere"))
    assert r.returncode == 1
    assert "cnnkit: error:" in r.stderr and "Traceback" not in r.stderr


def test_bad_arguments():
    r = run("train", "--model", "resnet9000")
    assert r.returncode != 0 and "unknown model 'resnet9000'" in r.stderr
    r = run("evaluate", "/nonexistent/model.cnnkit")
    assert r.returncode == 1 and "no such model file" in r.stderr
    r = run("train", "--verbose", "loud")
    assert r.returncode != 0 and "--verbose must be" in r.stderr
