"""Settings tables of the fleet provisioners (``[vm.ec2]``, ``[vm.kubernetes]``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from policies.config_table import ConfigTable


class Ec2Settings(ConfigTable):
    group: str = Field("", description="Auto Scaling group whose instances run model servers.")
    region: str = Field("us-east-1", description="AWS region of the group.")
    endpoint_url: str | None = Field(
        None, description="Override the AWS endpoint (tests, VPC endpoints)."
    )
    url_template: str = Field(
        "http://{private_ip}:8000",
        description="A replica's base URL from {private_ip}, {public_ip} or {instance_id}.",
    )
    tag_key: str | None = Field(
        None, description="Discover instances by this tag (default: aws:autoscaling:groupName)."
    )
    tag_value: str | None = Field(None, description="Value of `tag_key` (default: the group).")
    poll_interval_s: float = Field(5.0, gt=0, description="How often the group is re-read.")
    expected_boot_s: float = Field(
        120.0, gt=0, description="Boot time assumed before one was observed."
    )

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            url = value.format(private_ip="10.0.0.1", public_ip="10.0.0.1", instance_id="i-1")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{value!r} may use only {{private_ip}}, {{public_ip}} and {{instance_id}} ({exc})"
            ) from None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL template")
        return value

    def build(self):
        from .ec2 import Ec2Provisioner

        if not self.group:
            raise ValueError("vm.provisioner = 'ec2' needs [vm.ec2] group")
        return Ec2Provisioner(
            self.group,
            region=self.region,
            endpoint_url=self.endpoint_url,
            url_template=self.url_template,
            tag_key=self.tag_key,
            tag_value=self.tag_value,
            poll_interval_s=self.poll_interval_s,
            expected_boot_s=self.expected_boot_s,
        )


class KubernetesSettings(ConfigTable):
    deployment: str = Field("", description="Deployment of the model servers.")
    service: str | None = Field(
        None, description="Service in front of them (default: the deployment's name)."
    )
    namespace: str = Field("default", description="Namespace of both.")
    api_url: str = Field("https://kubernetes.default.svc", description="API server URL.")
    token_file: str | None = Field(
        None, description="Bearer token file (default in a pod: the service account's)."
    )
    ca_file: str | None = Field(None, description="CA bundle of the API server.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Model-server port (default: the endpoint's first port)."
    )
    use_endpoint_slices: bool = Field(
        True, description="Read EndpointSlices (false: the older Endpoints object)."
    )
    poll_interval_s: float = Field(2.0, gt=0, description="How often endpoints are re-read.")

    def build(self):
        from .kubernetes import KubernetesProvisioner

        if not self.deployment:
            raise ValueError("vm.provisioner = 'kubernetes' needs [vm.kubernetes] deployment")
        return KubernetesProvisioner(
            self.deployment,
            service=self.service,
            namespace=self.namespace,
            api_url=self.api_url,
            token_file=self.token_file,
            ca_file=self.ca_file,
            port=self.port,
            use_endpoint_slices=self.use_endpoint_slices,
            poll_interval_s=self.poll_interval_s,
        )
