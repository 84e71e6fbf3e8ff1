import os

# No run-time downloads anywhere in the suite.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: their ops are too small to split across threads, and on a
    shared 2-core machine a second thread that waits for a busy core made them ~4x slower (35 s vs 160 s measured).
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def kernel():
    """The kit's Jupyter kernel, registered in this venv if `make setup` has not (the pipeline tests need it)."""
    import subprocess
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    from agentr_lib.pipeline import KERNEL
    if KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", sys.prefix, "--name", KERNEL],
                       check=True, capture_output=True)
    return KERNEL
