"""What a session builds once: the model card, the network, the ONNX file (exported once per
weights, or the user's, checked) and both backends, each from its profile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from segbench.bench.inject import (
    InjectedBackend,
    candidate_profile,
    perturb_onnx,
    resolve_class,
)
from segbench.bench.segmenters import (
    BackendSegmenter,
    Segmenter,
    build_segmenter,
    profile_names,
)
from segbench.errors import ConfigError, SegbenchError
from segbench.models import ModelCard, load_network, state_digest
from segbench.models.unet import PlainConvUNet, count_flops
from segbench.pipeline.backends import Backend
from segbench.pipeline.export import check_onnx_matches, export_onnx
from segbench.pipeline.factory import build_backend
from segbench.settings.config import BenchConfig, Profile
from segbench.settings.injection import Injection
from segbench.settings.kinds import BackendKind, candidate_slot


def session_threads() -> int:
    """The one thread count of the profiles that set none: PyTorch's own default
    (``torch.get_num_threads()``, the machine's physical cores), so that every backend (torch,
    onnxruntime's CPU provider, OpenVINO) runs with the same count, fixed for the session."""
    import torch

    return int(torch.get_num_threads())


def with_threads(profile: Profile, threads: int) -> Profile:
    return profile if profile.threads is not None else replace(profile, threads=threads)


@dataclass
class Runtime:
    """Built once per session: the card, the backends (``"reference"`` and one per candidate,
    keyed by :func:`~segbench.settings.kinds.candidate_slot`), and where the ONNX file came
    from. Every profile's ``threads`` is set (the session's count where benchmarks.json left it
    unset)."""

    card: ModelCard
    backends: dict[str, Backend]
    profiles: dict[str, Profile]
    onnx_path: Path | None
    onnx_source: str  # "export" or "user"
    export_max_abs_diff: float | None
    network: nn.Module | None = None
    weights_sha256: str | None = None  # state_digest of the network (names, shapes, values)
    # by slot, as backends: what segments a case (segbench's pipeline on a backend, or the
    # user's pipeline or command; see segbench.bench.segmenters) and its class map
    segmenters: dict[str, Segmenter] = field(default_factory=dict)
    names: dict[str, dict[int, str]] = field(default_factory=dict)
    _flops: dict[tuple[int, int, int], float] = field(default_factory=dict, repr=False)
    # the session's injection: its mask edits apply to each candidate's mask before scoring
    injection: Injection = field(default_factory=Injection)

    def segmenter(self, slot: str) -> Segmenter:
        """What segments a case for ``slot`` (segbench's pipeline on ``backends[slot]`` when
        none was built)."""
        if slot not in self.segmenters:
            self.segmenters[slot] = BackendSegmenter(
                self.card, self.backends[slot], self.profiles[slot]
            )
        return self.segmenters[slot]

    def class_map(self, slot: str) -> dict[int, str]:
        """``slot``'s class numbering: its profile's ``labels``, else the model's classes."""
        return self.names.get(slot) or dict(enumerate(self.card.class_names))

    def gflop_per_window(self, window: tuple[int, int, int] | None) -> float | None:
        """Convolution GFLOP of one window (2 per multiply-add), for PlainConvUNet networks."""
        if window is None or not isinstance(self.network, PlainConvUNet):
            return None
        if window not in self._flops:
            self._flops[window] = count_flops(self.network, window) / 1e9
        return self._flops[window]


def check_tolerance_classes(config: BenchConfig, class_names: Sequence[str]) -> None:
    """Refuse a ``class_nsd_tolerance_mm`` key that names no class of the model (a typo would
    leave the class on the default tolerance)."""
    known = set(class_names[1:]) | {str(k) for k in range(1, len(class_names))}
    for where, gates in [
        ("gates", config.gates),
        *((f"cases.{c}", g) for c, g in config.case_gates.items()),
    ]:
        for key in gates.class_nsd_tolerance_mm:
            if key not in known:
                shown = ", ".join(class_names[1:6]) + (", ..." if len(class_names) > 6 else "")
                raise ConfigError(
                    f"{config.source}: key '{where}.class_nsd_tolerance_mm.{key}' names no class "
                    f"of the model ({shown}). Fix: name one of its classes or label numbers in "
                    f"{config.source}"
                )


def build_runtime(
    card: ModelCard,
    config: BenchConfig,
    cache_dir: Path,
    onnx: Path | None = None,
    injection: Injection | None = None,
    announce: Callable[[str], None] | None = None,
) -> Runtime:
    """Load the network, export (or check the user's) ONNX file once, build both backends; an
    ``injection`` makes the candidate deliberately worse (see :mod:`segbench.bench.inject`).
    An ONNX export (not a cache hit) is announced to ``announce``."""
    injection = injection or Injection()
    for edit in injection.mask_edits:
        resolve_class(edit, card.class_names)  # a class the model has, before anything runs
    check_tolerance_classes(config, card.class_names)
    threads = session_threads()
    net = load_network(card)
    profiles = {"reference": with_threads(config.reference, threads)}
    for name, cand in config.candidate_profiles.items():
        profiles[candidate_slot(name)] = with_threads(candidate_profile(cand, injection), threads)
    onnx_path, diff = _onnx_file(onnx, profiles, net, card, cache_dir / "onnx", announce)
    backends = _backends(profiles, net, onnx_path, injection, cache_dir / "onnx")
    base = Path(config.source).resolve().parent if config.source.endswith(".json") else Path.cwd()
    segmenters = {
        slot: build_segmenter(slot, profile, card, backends.get(slot), base)
        for slot, profile in profiles.items()
    }
    return Runtime(
        card,
        backends,
        profiles,
        onnx_path,
        "user" if onnx else "export",
        diff,
        net,
        weights_sha256=state_digest(net),
        injection=injection,
        segmenters=segmenters,
        names={slot: profile_names(p, card) for slot, p in profiles.items()},
    )


def _onnx_file(
    onnx: Path | None,
    profiles: dict[str, Profile],
    net: nn.Module,
    card: ModelCard,
    onnx_dir: Path,
    announce: Callable[[str], None] | None,
) -> tuple[Path | None, float | None]:
    """The ONNX file of the onnx profiles and the export's max logit difference: the user's
    ``onnx``, checked against the card (and the pipelines' patch fitting and batch), or the
    network exported once into ``onnx_dir``; ``(None, None)`` when no profile is onnx."""
    if onnx is not None:
        pipelines = [p.pipeline for p in profiles.values() if p.backend is BackendKind.ONNX]
        check_onnx_matches(
            onnx,
            card,
            fit=any(p.fit_patch for p in pipelines),
            batch=max((p.batch_size for p in pipelines), default=1),
            run=True,
        )
        return onnx, None
    if any(p.kind == BackendKind.ONNX.value for p in profiles.values()):
        exported = export_onnx(net, card, onnx_dir, announce=announce)
        return exported.path, exported.max_abs_diff
    return None, None


def _backends(
    profiles: dict[str, Profile],
    net: nn.Module,
    onnx_path: Path | None,
    injection: Injection,
    onnx_dir: Path,
) -> dict[str, Backend]:
    """A backend per torch or onnx profile (by slot), the candidates' made worse by
    ``injection``: perturbed ONNX weights, or wrapped in an :class:`InjectedBackend` (delay,
    slowdown, shift). An injection that needs segbench's own pipeline is refused for a user's
    deployment."""
    candidates = [slot for slot in profiles if slot != "reference"]
    candidate_onnx = onnx_path
    if injection.perturb:
        if any(profiles[s].kind != BackendKind.ONNX.value for s in candidates) or onnx_path is None:
            raise SegbenchError(
                "--segbench-inject perturb=... perturbs the candidate's ONNX weights, but a "
                "candidate profile is not onnx. Fix: use onnx candidates in benchmarks.json"
            )
        candidate_onnx = perturb_onnx(onnx_path, injection.perturb, onnx_dir)
    backends: dict[str, Backend] = {
        slot: build_backend(
            profile, net, onnx_path if slot == "reference" else candidate_onnx, onnx_dir
        )
        for slot, profile in profiles.items()
        if profile.kind in (BackendKind.TORCH.value, BackendKind.ONNX.value)
    }
    if injection.delay or injection.slowdown or injection.shift:
        deployed = [s for s in candidates if s not in backends]
        if deployed:
            raise SegbenchError(
                f"--segbench-inject {injection.describe()} slows or shifts segbench's own "
                f"pipeline, but candidate {deployed[0].partition(':')[2] or ''} is your deployment "
                f"({profiles[deployed[0]].kind}). Fix: inject into an onnx candidate, or "
                "make the deployment slower yourself"
            )
        for slot in candidates:
            if slot in backends:
                backends[slot] = InjectedBackend(backends[slot], injection)
    return backends
