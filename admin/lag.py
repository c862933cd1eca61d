"""`python -m admin lag`: the consumer lag read by `pedidos.adapters.kafka.lag`, as a table or
JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from pedidos.adapters.kafka.lag import GroupLag, Member


def _member_text(member: Member | None) -> str:
    return f"{member.client_id}@{member.host.lstrip('/')}" if member else "-"


def format_table(groups: Sequence[GroupLag]) -> str:
    lines = []
    for group in groups:
        lines.append(
            f"group {group.group} ({group.state.lower()}, {len(group.members)} member"
            f"{'' if len(group.members) == 1 else 's'}, lag {group.total})"
        )
        width = max([len("TOPIC"), *(len(p.topic) for p in group.partitions)])
        lines.append(
            f"  {'TOPIC':{width}}  {'PARTITION':>9}  {'COMMITTED':>10}  {'END':>10}  "
            f"{'LAG':>8}  MEMBER"
        )
        for p in group.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(
                f"  {p.topic:{width}}  {p.partition:>9}  {committed:>10}  {p.end:>10}  "
                f"{p.lag:>8}  {_member_text(p.member)}"
            )
        if not group.partitions:
            lines.append("  (no partitions assigned or committed)")
    return "\n".join(lines)


def to_json(groups: Sequence[GroupLag]) -> str:
    return json.dumps(
        {
            "groups": [
                {
                    "group": g.group,
                    "state": g.state,
                    "lag": g.total,
                    "members": [asdict(m) for m in g.members],
                    "partitions": [
                        {**asdict(p), "member": p.member.member_id if p.member else None}
                        for p in g.partitions
                    ],
                }
                for g in groups
            ]
        },
        indent=2,
    )
