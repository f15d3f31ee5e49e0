"""Reading a ``torch.save`` file that may come from anyone, for the loaders of PyTorch
checkpoints (rosinality's ``.pt``, InterFaceGAN's ``.pth``).

`read_torch_checkpoint` opens it with ``torch.load(weights_only=True)``: torch's restricted
reader, which builds tensors and plain containers and refuses every other global before calling
it, so a file that asks to run code is refused and nothing from it runs. Every failure is one
`FileFormatError` that names the file; what the object read must look like is the caller's to
check.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from facelatent.errors import FileFormatError
from facelatent.io import open_checked

__all__ = ["read_torch_checkpoint", "refusal_reason"]


def refusal_reason(text: str) -> str:
    """The reason in torch's weights-only refusal, without its preamble, which suggests
    ``weights_only=False`` (advice a loader of untrusted files must not pass on)."""
    reason = text.partition("trusted source.")[2] or text
    reason = reason.partition("Check the documentation")[0].split("WeightsUnpickler error:")[-1]
    reason = " ".join(reason.split())
    return "unreadable" if not reason or "weights_only" in reason else reason


def read_torch_checkpoint(path: str | Path, kind: str,
                          allowed: contextlib.AbstractContextManager[object] | None = None
                          ) -> object:
    """The object ``torch.save`` wrote to ``path``, read on the CPU with
    ``torch.load(weights_only=True)``; ``kind`` names the expected file in errors, and
    ``allowed`` (optional) is a context within which the reader accepts more globals.

    Raises `FileNotFoundError` for a missing file and `FileFormatError` naming the file for a
    global the reader refuses (nothing from the file was executed), or a damaged file.
    """
    path = Path(path)
    with open_checked(path, kind) as fh:
        try:
            with warnings.catch_warnings():   # torch's note on pickle protocols is not for users
                warnings.simplefilter("ignore", UserWarning)
                with allowed or contextlib.nullcontext():
                    return torch.load(fh, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = refusal_reason(str(exc))
            hint = "" if zipfile.is_zipfile(path) else \
                "; it is not a torch.save archive (an NVIDIA .pkl loads as stylegan2:PATH)"
            raise FileFormatError(f"refusing {path.name}: torch's weights-only reader stopped at "
                                  f"something other than tensors ({reason}); "
                                  f"nothing from the file was executed{hint}") from None
        except (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FileFormatError(f"{path} is not a readable PyTorch checkpoint ({first})") \
                from None
