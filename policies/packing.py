"""What packing a stage's convs costs a function's memory. Pure; the one rule the planner and
``burst.plan`` (a plan's totals, whether it fits) share.

A function instance runs convs on packed weights (``burst.packed_conv``) only for stages its
plan marks packed (``Stage.packed``). A packed weight is a second copy of the conv's weights,
paid for out of the same weight budget as the plain ones: a stage packed costs the function
its plain weights plus its convs' weights again. The planner chooses per stage, so in a tight
function it trades memory for packing where packing pays most (VGG-16's first convs carry
most of its compute and little of its weight), and the runtime packs exactly those.
"""

from __future__ import annotations


def held_bytes(plain_bytes: int, conv_bytes: int, packed: bool) -> int:
    """Weight bytes a stage's part costs the function that runs it: its plain weights, and
    its convs' packed copies if the stage is packed."""
    return plain_bytes + (conv_bytes if packed else 0)
