"""Evaluate order files larger than one machine on Dask (the `[dask]` extra).

durable_rules keeps process-global state that cannot be pickled, so the policy travels to the workers as
its source: the YAML texts (base, then variants, with their relative layout) and the parameter values.
Each worker process loads and compiles it once (cached by the source's hash, the last MAX_WORKER_POLICIES;
the compiler reuses rulesets by content hash anyway). Every partition goes through the same cell path as the
local batch (`engine.batch.evaluate_frame`), so rows, columns, errors and the summary are those of the local run.

Reading and writing order files on Dask is engine.daskio's; this module sends the policy, evaluates, and runs
the cluster. Dask is imported on use: `import engine` never needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .batch import check_strict_columns, evaluate_frame, resolve_columns, unknown_columns
from .compiler import CompiledPolicy, compile_policy
from .csvio import DEFAULT_MAX_COLUMNS
from .daskio import (
    DEFAULT_BLOCKSIZE,
    PartitionError,
    check_input,
    check_target,
    output_format,
    read_orders_dask,
    write_dask,
)
from .errors import InputError, UsageError
from .facts import parse_as_of
from .loader import spec_from_sources
from .memo import LRU
from .model import Method, OutputFormat
from .tabular import Summary

if TYPE_CHECKING:  # pragma: no cover
    import dask.dataframe as dd
    from distributed import Client

# ---------------------------------------------------------------------------------------------------------
# The policy as data: what travels to the workers.

@dataclass(frozen=True)
class PolicySource:
    """The policy's YAML files (paths relative to a common root, base first) and its parameter values."""

    files: tuple[tuple[str, str], ...]
    parameters: Mapping[str, Any]
    path: str
    digest: str


def policy_source(compiled: CompiledPolicy) -> PolicySource:
    """What a worker needs to rebuild the policy: never its compiled (durable_rules) state."""
    spec = compiled.spec
    if not spec.sources:
        raise UsageError(f"policy {spec.name!r} has no source files to send to the workers")
    paths = [Path(p).resolve() for p, _ in spec.sources]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    files = tuple((p.relative_to(root).as_posix(), text) for p, (_, text) in zip(paths, spec.sources, strict=True))
    parameters = dict(spec.parameters)
    digest = hashlib.sha256(json.dumps([files, spec.parameter_values()], sort_keys=True, default=str)
                            .encode()).hexdigest()
    return PolicySource(files, parameters, spec.path, digest)


# Policies compiled in this worker process, keyed by their source's digest (the files and the parameters:
# everything their answers depend on), the least recently used dropped beyond MAX_WORKER_POLICIES.
MAX_WORKER_POLICIES = 8
_compiled: LRU[str, CompiledPolicy] = LRU(MAX_WORKER_POLICIES)


def compiled_from_source(source: PolicySource) -> CompiledPolicy:
    """The policy compiled in this process, once per source (its texts, not files: an `extends:` that points
    nowhere from where the policy was read, as engine.loads with a base allows, does not matter)."""
    return _compiled.get_or_make(source.digest, lambda: _compile_source(source))


def _compile_source(source: PolicySource) -> CompiledPolicy:
    spec = spec_from_sources(source.files)  # each text a variant of the one before
    # Parameters as the client had them (Policy.with_parameters changes them without touching the files).
    return compile_policy(replace(spec, parameters=dict(source.parameters), path=source.path))


# ---------------------------------------------------------------------------------------------------------
# Evaluation: lazy, one task per partition.

def _evaluate_partition(part: pd.DataFrame, source: PolicySource, as_of: datetime, method: Method,
                        name: str) -> pd.DataFrame:
    return evaluate_frame(compiled_from_source(source), part, as_of, method, source=name)


def evaluate_dask(compiled: CompiledPolicy, ddf: dd.DataFrame, as_of: str | datetime | None = None,
                  method: Method = "cells", source: str = "input", strict: bool = False) -> dd.DataFrame:
    """`ddf`'s rows with the decision columns added: lazy, `map_partitions` over the cell path, order kept.

    A missing required column (or with strict, a misspelt one) raises InputError here, before anything is
    computed."""
    when = parse_as_of(as_of)
    resolve_columns(compiled.spec, [str(c) for c in ddf.columns], source)
    if strict:
        check_strict_columns(compiled.spec, [str(c) for c in ddf.columns], source)
    meta = evaluate_frame(compiled, ddf._meta, when, method, source=source)
    return ddf.map_partitions(_evaluate_partition, policy_source(compiled), when, method, source, meta=meta,
                              align_dataframes=False)


# ---------------------------------------------------------------------------------------------------------
# The cluster, and a whole run.

@contextmanager
def dask_client(address: str | None = "local", n_workers: int = 2) -> Iterator[Client]:
    """A client of the given scheduler, or (no address / 'local') of a LocalCluster of worker processes."""
    import logging

    from distributed import Client, LocalCluster

    if address in (None, "", "local"):
        # Workers' own logs silenced: a failed partition reaches the user once, as the one-line error.
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=logging.CRITICAL, preload=[__name__]) as cluster, Client(cluster) as client:
            yield client
    else:
        with Client(address) as client:
            yield client


def dask_setup(worker: Any) -> None:
    """Preload of the local cluster's workers: Ctrl-C signals the terminal's whole process group, and only the
    client should act on it (it shuts the workers down); a worker would print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class DaskRun:
    """What `run_evaluate` did: the summary, the output format, and how many partitions and workers."""

    summary: Summary
    fmt: OutputFormat
    partitions: int
    workers: int


def run_evaluate(compiled: CompiledPolicy, source: str, target: str, as_of: datetime, *,
                 address: str | None = "local", fmt: OutputFormat | None = None,
                 blocksize: int = DEFAULT_BLOCKSIZE, max_columns: int = DEFAULT_MAX_COLUMNS, strict: bool = False,
                 raw: bool = False, progress: Callable[[int, float], None] | None = None) -> DaskRun:
    """Evaluate every order of source (a CSV, a glob of CSVs, or Parquet) into target on the Dask scheduler at
    address ('local': a LocalCluster of 2 worker processes). What the local path refuses before writing is
    refused here before a cluster is started."""
    chosen = output_format(target, fmt)
    ddf, header = read_orders_dask(source, blocksize, max_columns)
    check_input(compiled.spec, source, header, [str(c) for c in ddf.columns], strict)
    check_target(Path(target).absolute(), chosen, target)
    out = evaluate_dask(compiled, ddf, as_of, source=source)
    with dask_client(address) as client:
        try:
            summary = write_dask(out, Path(target), chosen, client, header, progress, raw)
        except PartitionError as exc:
            raise InputError(exc.path, exc.reason) from None
        summary.unknown_columns = unknown_columns(compiled.spec, header or [str(c) for c in ddf.columns])
        workers = len(client.scheduler_info().get("workers", {}))
    return DaskRun(summary, chosen, ddf.npartitions, workers)
