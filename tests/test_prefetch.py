"""Batches made ahead in threads are the batches made on demand, in the same order."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from helpers import shared_dir
from trainer.data import CropSampler, find_images
from trainer.prefetch import Prefetcher


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_batches_come_in_order_from_the_start_number(threads):
    made = []

    def make(number):
        time.sleep(0.01 * (number % 3))  # later batches may finish first
        made.append(threading.current_thread().name)
        return number * 10

    with Prefetcher(make, start=5, threads=threads) as batches:
        assert [batches.take() for _ in range(8)] == [n * 10 for n in range(5, 13)]
    assert all(name.startswith("batches") for name in made) == (threads > 0)


def test_close_stops_making_batches():
    made = []
    batches = Prefetcher(lambda n: made.append(n) or time.sleep(0.05), threads=2)
    batches.take()
    batches.close()
    count = len(made)
    time.sleep(0.2)
    assert len(made) == count <= 4


def test_an_error_making_a_batch_reaches_the_taker():
    def make(number):
        if number == 2:
            raise ValueError("none of the training images could be read")
        return number

    with Prefetcher(make, threads=2) as batches:
        assert [batches.take(), batches.take()] == [0, 1]
        with pytest.raises(ValueError, match="could be read"):
            batches.take()


def test_sampler_drawn_from_many_threads_gives_the_serial_samples():
    paths = find_images(shared_dir() / "data" / "train" / "sun_hays80")[:12]
    serial = CropSampler(paths, 64, seed=1, zoom=2, flip=True)
    shared = CropSampler(paths, 64, seed=1, zoom=2, flip=True)
    numbers = list(range(0, 40))  # three epochs of 12
    expected = [serial.sample(n) for n in numbers]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(shared.sample, reversed(numbers)))[::-1]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
