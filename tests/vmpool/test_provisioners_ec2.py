"""The EC2 provisioner against moto's server on loopback (EC2 and Auto Scaling, no Docker)."""

from __future__ import annotations

import asyncio

import boto3
import pytest

from tests.support.s3_server import moto_server
from tests.vmpool.fake_fleet import FakeClient
from vmpool.pool import ReplicaPool
from vmpool.provisioners.base import Provisioner, ReplicaState
from vmpool.provisioners.ec2 import Ec2Provisioner

REGION = "us-east-1"
GROUP = "tidegate-replicas"


@pytest.fixture(scope="module")
def moto_url():
    with moto_server() as (endpoint, _):
        yield endpoint


@pytest.fixture
def group(moto_url, monkeypatch):
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        monkeypatch.setenv(var, value)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name=REGION)
    asg = boto3.client("autoscaling", endpoint_url=moto_url, region_name=REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="tidegate-model-server",
        LaunchTemplateData={"ImageId": image, "InstanceType": "c6i.xlarge"},
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": "tidegate-model-server"},
        MinSize=0,
        MaxSize=8,
        DesiredCapacity=0,
        AvailabilityZones=[f"{REGION}a"],
    )
    yield asg
    asg.delete_auto_scaling_group(AutoScalingGroupName=GROUP, ForceDelete=True)
    ec2.delete_launch_template(LaunchTemplateName="tidegate-model-server")


def _desired(asg) -> int:
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
        "DesiredCapacity"
    ]


async def test_scale_discover_probe_drain_and_replace(group, moto_url):
    answering: set[str] = set()

    async def probe(url: str) -> bool:
        return url in answering

    prov = Ec2Provisioner(
        GROUP,
        endpoint_url=moto_url,
        region=REGION,
        poll_interval_s=3600,
        url_template="http://{private_ip}:8000",
        probe=probe,
    )
    assert isinstance(prov, Provisioner)
    try:
        await prov.scale_to(2)
        assert _desired(group) == 2
        reps = prov.replicas()
        assert len(reps) == 2 and all(r.state == ReplicaState.BOOTING for r in reps)
        assert all(r.id.startswith("i-") and r.url.startswith("http://10.") for r in reps)
        answering.add(reps[0].url)
        await prov.refresh()
        states = {r.id: r.state for r in prov.replicas()}
        assert (
            states[reps[0].id] == ReplicaState.READY and states[reps[1].id] == ReplicaState.BOOTING
        )

        await prov.drain(reps[1].id)  # scale-in of a drained replica: that instance, one fewer
        assert _desired(group) == 1
        await prov.refresh()
        assert [r.id for r in prov.replicas()] == [reps[0].id]

        prov.mark_failed(reps[0].id)  # the group is told, and replaces it
        await asyncio.gather(*prov._tasks)
        health = group.describe_auto_scaling_instances(InstanceIds=[reps[0].id])
        assert health["AutoScalingInstances"][0]["HealthStatus"].upper() == "UNHEALTHY"
    finally:
        await prov.close()


async def test_the_pool_drives_the_group_like_the_local_provisioner(group, moto_url):
    async def probe(url: str) -> bool:
        return True

    prov = Ec2Provisioner(
        GROUP, endpoint_url=moto_url, region=REGION, poll_interval_s=3600, probe=probe
    )
    client = FakeClient()
    pool = ReplicaPool(prov, client, seed=0)
    try:
        await pool.scale_to(3)
        await prov.refresh()
        assert len(pool.ready()) == 3 and _desired(group) == 3
        await pool.scale_to(1)  # drains two, then terminates exactly those
        while pool.draining():
            await asyncio.sleep(0)
        assert _desired(group) == 1 and len(prov.replicas()) == 1
    finally:
        await pool.close()
