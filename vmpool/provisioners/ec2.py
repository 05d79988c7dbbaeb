"""EC2 provisioner: an Auto Scaling group whose instances run ``tidegate model-server``.

The group's desired capacity is the replica count (``SetDesiredCapacity``); the group's instances
are discovered by tag (by default the ``aws:autoscaling:groupName`` tag EC2 puts on them, or your
own ``tag_key``/``tag_value``) and each is a replica at ``url_template`` (``{private_ip}``,
``{public_ip}``, ``{instance_id}``), ready once its ``/v2/health/ready`` answers 200. A drained
replica leaves with ``TerminateInstanceInAutoScalingGroup`` (the desired capacity drops by one);
a dead one is reported with ``SetInstanceHealth`` so the group replaces it. Calls go through
aioboto3; ``endpoint_url`` points them elsewhere (moto's server in the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from .base import ReplicaInfo, ReplicaState

log = logging.getLogger("tidegate.provisioner.ec2")

Probe = Callable[[str], Awaitable[bool]]


async def http_ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url + "/v2/health/ready") as resp:
                return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


class Ec2Provisioner:
    def __init__(
        self,
        group: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        url_template: str = "http://{private_ip}:8000",
        tag_key: str | None = None,
        tag_value: str | None = None,
        poll_interval_s: float = 5.0,
        expected_boot_s: float = 120.0,
        probe: Probe = http_ready,
        session_kwargs: dict | None = None,
    ):
        self.group = group
        self.region, self.endpoint_url = region, endpoint_url
        self.url_template = url_template
        self.tag_key = tag_key or "aws:autoscaling:groupName"
        self.tag_value = tag_value or group
        self.poll_interval_s = poll_interval_s
        self.expected_boot_s = expected_boot_s
        self.probe = probe
        self.session_kwargs = dict(session_kwargs or {})
        self.boot_failures = 0  # instances that stopped before they were ever ready
        self._replicas: dict[str, ReplicaInfo] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._asg = self._ec2 = None
        self._poller: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def _clients(self):
        if self._stack is None:
            import aioboto3

            session = aioboto3.Session(**self.session_kwargs)
            stack = contextlib.AsyncExitStack()
            kw = {"region_name": self.region, "endpoint_url": self.endpoint_url}
            self._asg = await stack.enter_async_context(session.client("autoscaling", **kw))
            self._ec2 = await stack.enter_async_context(session.client("ec2", **kw))
            self._stack = stack
        return self._asg, self._ec2

    # the Provisioner protocol ------------------------------------------------------------------

    def replicas(self) -> list[ReplicaInfo]:
        return list(self._replicas.values())

    async def scale_to(self, count: int) -> None:
        if count < 0:
            raise ValueError("replica count must be >= 0")
        asg, _ = await self._clients()
        await asg.set_desired_capacity(
            AutoScalingGroupName=self.group, DesiredCapacity=count, HonorCooldown=False
        )
        await self.refresh()
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def drain(self, replica_id: str) -> None:
        asg, _ = await self._clients()
        info = self._replicas.get(replica_id)
        if info is not None:
            info.state = ReplicaState.STOPPING
        await asg.terminate_instance_in_auto_scaling_group(
            InstanceId=replica_id, ShouldDecrementDesiredCapacity=True
        )
        self._replicas.pop(replica_id, None)

    def mark_failed(self, replica_id: str) -> None:
        info = self._replicas.get(replica_id)
        if info is None:
            return
        info.state = ReplicaState.FAILED
        task = asyncio.get_running_loop().create_task(self._report_unhealthy(replica_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_unhealthy(self, replica_id: str) -> None:
        asg, _ = await self._clients()
        await asg.set_instance_health(
            InstanceId=replica_id, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
        )

    async def close(self) -> None:
        """Stop watching the group; the fleet itself keeps running (it is not ours to end)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    # discovery ---------------------------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # an API hiccup: keep the last view, log, try again next time
                log.exception("cannot refresh Auto Scaling group %s", self.group)

    async def refresh(self) -> None:
        """Read the group's live instances by tag and probe the ones not yet ready."""
        _, ec2 = await self._clients()
        filters = [
            {"Name": f"tag:{self.tag_key}", "Values": [self.tag_value]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
        seen: dict[str, dict] = {}
        paginator = ec2.get_paginator("describe_instances")
        async for page in paginator.paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    seen[inst["InstanceId"]] = inst
        for gone in set(self._replicas) - set(seen):
            info = self._replicas.pop(gone)
            if info.ready_at_s is None and info.state == ReplicaState.BOOTING:
                self.boot_failures += 1
        for iid, inst in seen.items():
            info = self._replicas.get(iid)
            if info is None:
                info = ReplicaInfo(iid, self._url(inst), ReplicaState.BOOTING, time.monotonic())
                self._replicas[iid] = info
            elif not info.url.split("//", 1)[-1].split(":")[0]:
                info.url = self._url(inst)  # the address arrives once the instance runs
            if (
                info.state == ReplicaState.BOOTING
                and inst["State"]["Name"] == "running"
                and await self.probe(info.url)
            ):
                info.state, info.ready_at_s = ReplicaState.READY, time.monotonic()

    def _url(self, inst: dict) -> str:
        return self.url_template.format(
            private_ip=inst.get("PrivateIpAddress", ""),
            public_ip=inst.get("PublicIpAddress", ""),
            instance_id=inst["InstanceId"],
        )
