"""No batch system: workers are processes on this machine (Dask LocalCluster, Parsl LocalProvider,
vine_factory ``-T local``). Nothing to submit, list or cancel."""

from __future__ import annotations

from hpckit.deploy.schedulers.base import JobStatus, Scheduler


class LocalScheduler(Scheduler):
    name = "local"
    label = "local"
    batch = False
    directive_prefix = None
    submit_command = "bash"
    dask_cluster_class = "distributed.LocalCluster"
    parsl_provider_name = "LocalProvider"
    taskvine_batch_type_name = "local"

    @property
    def commands(self) -> tuple[str, ...]:
        return ()

    def status(self, job_ids) -> dict[str, JobStatus]:
        return {}

    def cancel(self, job_ids) -> None:
        return None

    def queued(self, job_ids) -> list[str]:
        return []
