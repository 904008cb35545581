"""Device meshes from config, and multi-host start-up."""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")  # the names config.mesh.rules map logical axes to
DATA_AXES = ("data", "fsdp")


def resolve_shape(shape, n_devices: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"mesh.shape={shape} has more than one -1; at most one axis can "
                         "take the remaining devices")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known <= 0 or n_devices % known:
            raise ValueError(f"mesh.shape={shape} cannot cover {n_devices} devices: "
                             f"{n_devices} is not divisible by {known}; change mesh.shape")
        shape = tuple(n_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != n_devices:
        raise ValueError(f"mesh.shape={shape} needs {math.prod(shape)} devices but "
                         f"{n_devices} are present; set --config.mesh.shape so its "
                         f"product is {n_devices} (e.g. '({n_devices},1,1)')")
    return shape


def make_mesh(mesh_cfg, devices=None) -> Mesh:
    """A mesh with Auto axis types over ``devices`` (default: all devices); its axes are
    always :data:`MESH_AXES`, sized by ``mesh.shape``."""
    devices = jax.devices() if devices is None else devices
    axes = MESH_AXES
    if len(mesh_cfg.shape) != len(axes):
        raise ValueError(f"mesh.shape={tuple(mesh_cfg.shape)} must have {len(axes)} entries, "
                         f"the sizes of the mesh axes {axes}; e.g. --config.mesh.shape="
                         "'(-1,1,1)'")
    shape = resolve_shape(mesh_cfg.shape, len(devices))
    if devices is jax.devices() or len(devices) == jax.device_count():
        return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes),
                             devices=devices)
    return Mesh(np.asarray(devices).reshape(shape), axes,
                axis_types=(AxisType.Auto,) * len(axes))


def data_parallel_size(mesh: Mesh) -> int:
    sizes = dict(zip(mesh.axis_names, mesh.devices.shape))
    return math.prod(sizes.get(a, 1) for a in DATA_AXES)


def batch_spec(mesh: Mesh) -> PartitionSpec:
    axes = tuple(a for a in DATA_AXES if a in mesh.axis_names)
    return PartitionSpec(axes)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same value on every device of ``mesh`` (scalars, RNG keys, counters)."""
    return NamedSharding(mesh, PartitionSpec())


def padded_batch_size(batch: int, mesh: Mesh) -> int:
    """The smallest multiple of the data-parallel size and the process count >= ``batch``:
    sampling and evaluation pad their batch to it and drop the padding afterwards."""
    unit = math.lcm(data_parallel_size(mesh), jax.process_count())
    return -(-batch // unit) * unit


def check_batch(global_batch: int, mesh: Mesh, what: str = "data.global_batch_size"):
    dp = data_parallel_size(mesh)
    if global_batch % dp:
        raise ValueError(f"{what}={global_batch} is not divisible by the data-parallel size "
                         f"{dp} (mesh data x fsdp); use a multiple of {dp}")
    if global_batch % jax.process_count():
        raise ValueError(f"{what}={global_batch} is not divisible by the process count "
                         f"{jax.process_count()}")


def maybe_initialize_distributed() -> None:
    """Join a multi-host job when the usual environment variables say there is one.

    ``MDLM_COORDINATOR`` (host:port), ``MDLM_NUM_PROCESSES`` and ``MDLM_PROCESS_ID`` select
    an explicit start-up (also what the local two-process tests use); on TPU pods and SLURM
    clusters ``jax.distributed.initialize()`` finds everything on its own and is called
    when ``MDLM_DISTRIBUTED=auto``.
    """
    if jax.distributed.is_initialized():
        return
    coordinator = os.environ.get("MDLM_COORDINATOR")
    if coordinator:
        kwargs = {}
        if os.environ.get("MDLM_LOCAL_DEVICE_IDS"):
            kwargs["local_device_ids"] = [
                int(i) for i in os.environ["MDLM_LOCAL_DEVICE_IDS"].split(",")]
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(os.environ["MDLM_NUM_PROCESSES"]),
            process_id=int(os.environ["MDLM_PROCESS_ID"]),
            **kwargs,
        )
    elif os.environ.get("MDLM_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
