import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The test machine's 2 cores are shared: one intra-op thread avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
