"""A real two-node SLURM cluster on this machine, for the SLURM tests: munged, slurmctld, slurmd -N n1 / -N n2.

    from slurm_cluster import slurm_cluster   # a session fixture; tests get its environment (SLURM_CONF)

Both nodes are NodeAddr=127.0.0.1 with their own Port=, from a generated slurm.conf in a temporary
folder. The daemons run in the foreground as children of the test session and are stopped by pid.
The Debian packages (slurm-wlm, munge) are installed by .ci/run; the tests skip, saying why, only
where they are missing and cannot be installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
NODES = ("n1", "n2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def packages_missing() -> str | None:
    """Install slurm-wlm and munge when they are absent (as root); return why they are unavailable, if so."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return None
    if os.geteuid() != 0:
        return "SLURM tests need slurm-wlm and munge (apt-get install -y slurm-wlm munge, as root)"
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], capture_output=True, text=True,
                            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
    if result.returncode != 0:
        return f"apt-get install slurm-wlm munge failed: {result.stderr.strip()[-300:]}"
    return None


SLURM_CONF = """\
ClusterName=launchtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool-%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd-%n.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=60
MinJobAge=3600
SchedulerParameters=defer_batch=0
NodeName=n1 NodeAddr=127.0.0.1 Port={n1_port} CPUs=1 RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 Port={n2_port} CPUs=1 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """The running test cluster: its config folder and the environment its clients need."""

    conf_dir: Path
    env: dict[str, str]

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), capture_output=True, text=True, env=self.env, check=False)

    def job_state(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` fields (JobState, Restarts, ExitCode, Reason, NodeList, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def wait_for(self, job_id: str, states: tuple[str, ...], timeout_s: float) -> dict[str, str]:
        """Poll until the job reaches one of ``states``; fail with the job's record after ``timeout_s``."""
        deadline, state = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state.get("JobState") in states:
                return state
            time.sleep(2)
        raise AssertionError(f"job {job_id} not in {states} after {timeout_s}s: {state}")

    def release_requeued(self, job_id: str, timeout_s: float = 120) -> None:
        """SLURM holds a requeued job back for a while (Reason=BeginTime); on the test cluster, start it now."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state.get("JobState") == "PENDING" and state.get("Reason") == "BeginTime":
                self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
                return
            if int(state.get("Restarts", 0)) >= 1 and state.get("JobState") == "RUNNING":
                return
            time.sleep(1)

    def log(self, name: str) -> str:
        path = self.conf_dir / name
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


def start_munged(started: list[subprocess.Popen]) -> None:
    """Start munged as the munge user unless one already answers on its socket."""
    if MUNGE_SOCKET.exists() and subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
        return
    munge = pwd.getpwnam("munge")
    run_dir = MUNGE_SOCKET.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chown(run_dir, munge.pw_uid, munge.pw_gid)
    command = ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--init-groups", "munged", "-F"]
    started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _ in range(50):
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("munged did not start")


def wait_idle(cluster: SlurmCluster, timeout_s: float = 60) -> None:
    """Wait until ``sinfo`` shows both nodes idle."""
    deadline, out = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        out = cluster.run("sinfo", "-h", "-N", "-o", "%N %t").stdout
        if sorted(line.split()[1] for line in out.splitlines() if line.strip()) == ["idle", "idle"]:
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM nodes not idle after {timeout_s}s: {out!r}\n{cluster.log('slurmctld.log')}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """One slurmctld and two slurmd (n1, n2) on this machine; stopped, by pid, at the end of the session."""
    reason = packages_missing()
    if reason:
        print(f"SKIP SLURM tests: {reason}")
        pytest.skip(reason)
    conf_dir = tmp_path_factory.mktemp("slurm")
    (conf_dir / "state").mkdir()
    conf = conf_dir / "slurm.conf"
    conf.write_text(SLURM_CONF.format(dir=conf_dir, ctld_port=free_port(), n1_port=free_port(), n2_port=free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(conf_dir, env)
    started: list[subprocess.Popen] = []
    try:
        start_munged(started)
        daemons = [["slurmctld", "-D", "-i"], *(["slurmd", "-D", "-N", node] for node in NODES)]
        for command in daemons:
            started.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1 if command[0] == "slurmctld" else 0)
        wait_idle(cluster)
        yield cluster
    finally:
        if started:
            cluster.run("scancel", "--user=root")
        for proc in reversed(started):
            proc.terminate()
        for proc in reversed(started):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
