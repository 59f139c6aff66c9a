"""moto_server, with EC2 tags looked up by resource id through moto's own map.

moto answers a resource's tags (for every instance it describes, and for every `tag:`
filter it evaluates) by scanning the tags of every resource it holds, so each
DescribeInstances costs time in proportion to instances x tags: at 400 instances one
describe of the group took 2.2 s. EC2 itself does not slow down with what it holds. This
wrapper answers the one-exact-id query from moto's per-resource map and leaves every other
query to moto: the same answers, at a cost that does not grow with the fleet.
Used by scripts/bench --peers (EC2 row) only: both dtk and the boto3 baseline talk to it.
"""
import sys

from moto.ec2.models.tags import TagBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_scan = TagBackend.describe_tags


def describe_tags(self, filters=None):
    ids = (filters or {}).get("resource-id")
    if filters is not None and len(filters) == 1 and ids is not None and len(ids) == 1:
        rid = ids[0]
        # fnmatch's specials; an exact id is what moto's own resources ask for.
        if not any(c in rid for c in "*?[\\"):
            kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
            own = self.tags[rid] if rid in self.tags else {}
            return [
                {"resource_id": rid, "key": k, "value": v, "resource_type": kind}
                for k, v in own.items()
            ]
    return _scan(self, filters)


TagBackend.describe_tags = describe_tags

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
