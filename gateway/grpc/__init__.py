"""The Open Inference Protocol's gRPC service beside HTTP (``server.start_for_gateway``)."""

import os

# The gateway forks model servers and the function runtime (fork + exec at once) while gRPC's
# threads run; gRPC's fork handlers only matter to a child that goes on using gRPC, and logged
# "skipping fork() handlers" at each spawn. Off unless the operator set it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
