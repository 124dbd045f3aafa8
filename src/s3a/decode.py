"""Image decoding for the encoders: the exact PIL path's pixels, the fast reduced-scale JPEG path and
the batched GPU JPEG path (nvImageCodec or torchvision's nvJPEG), all resized and cropped alike."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

log = logging.getLogger(__name__)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` after torchvision's ``Resize(size)``: the shorter side becomes ``size``, the
    longer one ``int(size * long / short)`` (truncated, as torchvision does)."""
    short, long = min(height, width), max(height, width)
    new_long = max(size, int(size * long / short))
    return (size, new_long) if height <= width else (new_long, size)


def resize_crop(
    images: Sequence[torch.Tensor], size: int, offsets: Sequence[tuple[int, int]] | None = None
) -> torch.Tensor:
    """uint8 ``(3, H_i, W_i)`` images (any sizes, one device) -> uint8 ``(B, 3, size, size)``.

    The geometry of torchvision's ``Resize(size)`` (:func:`resized_shape`, bicubic with antialiasing,
    rounded to uint8), then a ``size`` crop at each image's ``(top, left)`` in ``offsets``
    (``RandomCrop(size)``), or in the centre when ``offsets`` is None (``CenterCrop(size)``); one
    interpolation per distinct input shape, on the images' device.
    """
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8, device=images[0].device)
    groups: dict[tuple[int, int], list[int]] = {}
    for j, image in enumerate(images):
        groups.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(j)
    for (h, w), members in groups.items():
        new = resized_shape(h, w, size)
        batch = torch.stack([images[j] for j in members]).float()
        resized = F.interpolate(batch, size=new, mode="bicubic", antialias=True, align_corners=False)
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        if offsets is None:  # one crop for the whole group
            top, left = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
            out[members] = resized[:, :, top : top + size, left : left + size]
            continue
        for k, j in enumerate(members):
            top, left = offsets[j]
            out[j] = resized[k, :, top : top + size, left : left + size]
    return out


def resize_center_crop(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """:func:`resize_crop` with the centre crop: torchvision's ``Resize(size)`` + ``CenterCrop(size)``."""
    return resize_crop(images, size)


def pil_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image (any mode) as uint8 RGB ``(3, H, W)`` pixels (a copy, owned by the tensor)."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


class DeviceNormalized:
    """Base of the decoders whose uint8 output is normalised on the device with the model's mean and
    std: ``from_transform`` reads ``size``, ``mean`` and ``std`` off an open_clip evaluation transform,
    ``normalize`` maps a uint8 batch on the device to the model's float input. Subclasses add
    ``__call__(path)`` (in a loader worker) and ``finish(batch, device) -> FinishedBatch``."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.mean, self.std = int(size), tuple(mean), tuple(std)

    @classmethod
    def from_transform(cls, transform: Callable):
        """Read the input size and normalisation from an open_clip evaluation transform."""
        size = mean = std = None
        for step in getattr(transform, "transforms", []):
            if isinstance(step, T.Resize):
                size = step.size if isinstance(step.size, int) else min(step.size)
            if isinstance(step, T.Normalize):
                mean, std = step.mean, step.std
        if size is None or mean is None:
            raise ValueError(
                f"cannot read the input size and normalisation from {transform!r}; use decoder 'pil'"
            )
        return cls(size, mean, std)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` on the device -> normalised float."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return (batch.float() / 255.0 - mean) / std


class FastDecode(DeviceNormalized):
    """Path -> ``(3, size, size)`` uint8 tensor in a worker: reduced-scale JPEG decoding, then
    :func:`resize_center_crop` in torch. Normalisation happens on the device."""

    def _decode(self, path: str) -> torch.Tensor:
        """uint8 ``(3, H, W)``; JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
        still leaves the shorter side >= ``size``, which skips most of the decoding work."""
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (self.size, self.size))
            return pil_pixels(img)

    def __call__(self, path: str) -> torch.Tensor:
        return resize_center_crop([self._decode(path)], self.size)[0]

    def finish(self, images: torch.Tensor, device: torch.device) -> FinishedBatch:
        return list(range(len(images))), self.normalize(images.to(device, non_blocking=True)), []


_JPEG_MAGIC = b"\xff\xd8\xff"


#: JPEG library of the ``gpu`` decoder: ``auto`` (nvImageCodec when installed, else torchvision),
#: ``nvimgcodec`` or ``torchvision``; the environment variable ``S3A_GPU_JPEG`` overrides it.
GPU_JPEG_CODECS = ("auto", "nvimgcodec", "torchvision")
_nvimgcodec_decoders: dict[str, Any] = {}


def load_nvimgcodec():
    """The ``nvidia.nvimgcodec`` module, or ``None`` when nvImageCodec is not installed."""
    try:
        from nvidia import nvimgcodec
    except ImportError:
        return None
    return nvimgcodec


def _nvimgcodec_decoder(device: torch.device):
    """One nvImageCodec decoder per device and process (it owns a CPU thread pool and CUDA streams):
    on a GPU every backend (the hardware JPEG engines of A100/H100, CUDA, hybrid, CPU), on the CPU
    its CPU backend (how the tests run it)."""
    key = str(device)
    if key not in _nvimgcodec_decoders:
        nv = load_nvimgcodec()
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            _nvimgcodec_decoders[key] = nv.Decoder(device_id=index)
        else:
            cpu = nv.Backend(nv.BackendKind.CPU_ONLY)
            _nvimgcodec_decoders[key] = nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CPU_ONLY, backends=[cpu])
    return _nvimgcodec_decoders[key]


class GpuDecode(DeviceNormalized):
    """Batched JPEG decoding on the device.

    In a worker, :meth:`__call__` only reads the file: a JPEG stays its encoded bytes (1-D uint8),
    any other format is decoded there with PIL (``(3, H, W)`` uint8). In the main process,
    :meth:`finish` decodes a batch's JPEGs in one call on the device, then resizes, crops and
    normalises them there. The JPEG library is nvImageCodec (``nvidia-nvimgcodec-cu12``/``-cu13``,
    which uses the hardware JPEG decoders of A100/H100 and a CPU thread pool for the rest) when it is
    installed, else torchvision's nvJPEG batch decode (whose Huffman decoding runs on one CPU thread:
    about 1,400 images/s on an H100 node). A JPEG the batched call rejects (CMYK, corrupt) is retried
    alone, then with PIL; one that nothing decodes is reported as unreadable. On a CPU device the
    same code runs (libjpeg-turbo), which is how the tests exercise it.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], codec: str | None = None):
        super().__init__(size, mean, std)
        codec = codec or os.environ.get("S3A_GPU_JPEG", "auto")
        if codec not in GPU_JPEG_CODECS:
            raise ValueError(f"S3A_GPU_JPEG must be one of {GPU_JPEG_CODECS}, got {codec!r}")
        if codec == "nvimgcodec" and load_nvimgcodec() is None:
            raise ValueError(
                "S3A_GPU_JPEG=nvimgcodec, but nvImageCodec is not installed (pip install s3a[gpu])"
            )
        self.codec = codec
        self._in_use: tuple[Any, torch.cuda.Event] | None = None

    def __getstate__(self) -> dict[str, Any]:  # workers get the settings, never the codec's buffers
        return {**self.__dict__, "_in_use": None}

    def __call__(self, path: str) -> torch.Tensor:
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:3] == _JPEG_MAGIC:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        with Image.open(path) as img:
            return pil_pixels(img)

    def _decode_alone(self, data: torch.Tensor, device: torch.device) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            pass
        with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
            return pil_pixels(img).to(device)

    def _decode_nvimgcodec(self, datas: list[torch.Tensor], device: torch.device):
        """``(images or None per input, the codec's image objects)``; the latter own the GPU memory the
        former view, so they must outlive every kernel that reads it."""
        nv = load_nvimgcodec()
        params = nv.DecodeParams(
            apply_exif_orientation=False, color_spec=nv.ColorSpec.SRGB, sample_format=nv.SampleFormat.I_RGB
        )
        streams = [nv.CodeStream(data.numpy()) for data in datas]
        if device.type == "cuda":
            owners = _nvimgcodec_decoder(device).decode(
                streams, params=params, cuda_stream=torch.cuda.current_stream(device).cuda_stream
            )
            views = [None if o is None else torch.as_tensor(o, device=device) for o in owners]
        else:
            owners = _nvimgcodec_decoder(device).decode(streams, params=params)
            views = [None if o is None else torch.from_numpy(np.asarray(o.cpu())) for o in owners]
        return [None if v is None else v.permute(2, 0, 1) for v in views], owners

    def _uses_nvimgcodec(self) -> bool:
        return self.codec == "nvimgcodec" or (self.codec == "auto" and load_nvimgcodec() is not None)

    def _decode_batch(self, datas: list[torch.Tensor], device: torch.device):
        if self._uses_nvimgcodec():
            return self._decode_nvimgcodec(datas, device)
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device), None
        except RuntimeError:  # one bad file fails the whole call: decode one by one
            return [None] * len(datas), None

    def decode_with(
        self,
        packed: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        use: Callable[[list[int], list[torch.Tensor]], Any],
    ) -> tuple[list[int], Any, list[tuple[int, str]]]:
        """Decode a packed batch on ``device`` and return ``(positions kept, use(kept, images), [(position,
        reason)] of failures)``; ``use`` is not called when nothing decoded (None instead). The decoded
        images live until the kernels ``use`` queued on the current stream have read them."""
        if self._in_use is not None:  # the previous batch's codec buffers, once its kernels have run
            self._in_use[1].synchronize()
            self._in_use = None
        if device.type == "cuda" and not self._uses_nvimgcodec():
            # torchvision decodes on a stream of its own, so its outputs' memory is not ordered with our
            # kernels: wait for the previous batch's before decoding (without this wait, a few of 1,000
            # compared images came out corrupt on an H100: mean cosine to the PIL path 0.9979, min 0.27)
            torch.cuda.current_stream(device).synchronize()
        items = _unpack(packed)
        decoded: dict[int, torch.Tensor] = {}
        jpegs = [j for j, item in enumerate(items) if item.dim() == 1]
        owners = None
        if jpegs:
            batch, owners = self._decode_batch([items[j] for j in jpegs], device)
            decoded.update((j, image) for j, image in zip(jpegs, batch, strict=True) if image is not None)
        bad: list[tuple[int, str]] = []
        for j, item in enumerate(items):
            if j in decoded:
                continue
            try:
                decoded[j] = self._decode_alone(item, device) if item.dim() == 1 else item.to(device)
            except Exception as exc:  # any decode error: the image is skipped and reported
                bad.append((j, f"{type(exc).__name__}: {exc}"))
        keep = sorted(decoded)
        if not keep:
            return [], None, bad
        result = use(keep, [decoded[j] for j in keep])
        if owners is not None and device.type == "cuda":  # kept until the kernels reading them have run
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(device))
            self._in_use = (owners, done)
        return keep, result, bad

    def finish(self, packed: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> FinishedBatch:
        return self.decode_with(
            packed, device, lambda _, images: self.normalize(resize_center_crop(images, self.size))
        )


#: ``(positions kept, model input for them or None, [(position, reason)] of failures)``
FinishedBatch = tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]


_T = TypeVar("_T")
_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ahead(items: Iterator[_T], device: torch.device, depth: int = 2) -> Iterator[_T]:
    """``items``, produced up to ``depth`` ahead by a background thread: the decoding and resizing of
    the next batches run while this thread runs the model on the current one.

    On CUDA the thread queues its work on a stream of its own; before an item is handed over, the
    consumer's stream waits for that work (an event) and the item's tensors are marked as used on the
    consumer's stream (``record_stream``), so the caching allocator cannot reuse their memory early.
    The thread runs without autograd (``no_grad``; not inference mode, whose tensors a training step
    could not save for its backward pass). An exception in the thread is raised here, with its
    traceback; when the consumer stops early (or fails), the thread stops after its current item.
    """
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    handoff: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with torch.no_grad(), torch.cuda.stream(side) if side else contextlib.nullcontext():
                for item in items:
                    done = None
                    if side is not None:
                        done = torch.cuda.Event()
                        done.record(side)
                    if not put((item, done)):
                        return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
        finally:
            put(_END)

    thread = threading.Thread(target=produce, name="s3a-decode-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = handoff.get()
            if got is _END:
                return
            if isinstance(got, _Raised):
                raise got.exc
            item, done = got
            if done is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(done)
                for value in item if isinstance(item, tuple) else (item,):
                    if isinstance(value, torch.Tensor) and value.is_cuda:
                        value.record_stream(current)
            yield item
    finally:
        stop.set()
        thread.join(timeout=60)
        close = getattr(items, "close", None)
        if close is not None and not thread.is_alive():
            close()


def pack(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 tensors of different shapes (encoded JPEG bytes, ``(3, H, W)`` pixels) as one flat tensor
    plus ``(B, 4)`` int64 rows ``(start, d0, d1, d2)`` (``d1 = d2 = 0`` for 1-D bytes): a batch crosses
    from a loader worker in one shared-memory block instead of one per image (which made the transfer,
    not the decoding, the bottleneck). :func:`_unpack` takes it apart."""
    layout, start = [], 0
    for x in tensors:
        dims = list(x.shape) + [0] * (3 - x.dim())
        layout.append([start, *dims])
        start += x.numel()
    return torch.cat([x.reshape(-1) for x in tensors]), torch.tensor(layout, dtype=torch.long)


def _collate(batch: list[tuple[int, torch.Tensor | None, str]], join: Callable[[list[torch.Tensor]], Any]):
    """``(index, join(images) or None, [(i, reason) of worker failures])`` of a loader batch of
    ``(i, image or None, reason)`` items."""
    ok = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, why) for i, x, why in batch if x is None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    return idx, join([x for _, x in ok]) if ok else None, bad


def collate_stacked(batch: list[tuple[int, torch.Tensor | None, str]]):
    """A loader batch of ``(i, image or None, reason)`` items: ``(index, stacked images or None,
    [(i, reason) of worker failures])``."""
    return _collate(batch, torch.stack)


def collate_packed(batch: list[tuple[int, torch.Tensor | None, str]]):
    """Like :func:`collate_stacked` for items of different sizes (encoded JPEGs, decoded pixels),
    packed into one tensor (:func:`pack`)."""
    return _collate(batch, pack)


def _unpack(packed: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    """The items of :func:`pack`, as views into its flat tensor."""
    flat, layout = packed
    items = []
    for start, d0, d1, d2 in layout.tolist():
        shape = [d for d in (d0, d1, d2) if d]
        items.append(flat[start : start + math.prod(shape)].view(shape))
    return items
