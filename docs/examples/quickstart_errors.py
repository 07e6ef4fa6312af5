"""How a watch ends with an error: a follower's exception, or the Curator's."""

import trio

import trionodes
from trionodes.testing import make_node, open_fake_curator

NodeState = trionodes.NodeState


class NotUp(Exception):
    """Raised by our follower when it sees a node that is not UP."""


def check(node: trionodes.Node) -> None:
    if node.state is not NodeState.UP:
        raise NotUp(node.id)


async def main() -> None:
    async with open_fake_curator() as fake:
        fake.put(make_node(1), make_node(2, state=NodeState.STANDBY))
        follower = trionodes.SimpleFollower(on_new_updated=check)

        async with trionodes.open_curator(fake.host, fake.port) as curator:
            # 1. A callback's exception ends the watch and comes out as itself.
            try:
                await trionodes.watch_nodes(curator, follower)
            except NotUp as exc:
                print("the follower ended the watch:", exc)

            # 2. Inside a nursery it is still that exception, but the nursery wraps
            #    it in an ExceptionGroup, as nurseries do: catch it with except*.
            fake.put(make_node(2))
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trionodes.watch_nodes, curator, follower)
                    fake.put(make_node(1, state=NodeState.DECOMMISSIONED))
                    await trio.sleep_forever()
            except* NotUp as group:
                print("the follower ended the watch:", *group.exceptions)

            # 3. A status that retrying cannot fix gives a CuratorError. (Faults that
            #    retrying can fix, UNAVAILABLE for one, do not end a watch at all.)
            try:
                async with trionodes.open_node_changes(curator) as changes:
                    await changes.receive()
                    fake.fail_streams(trionodes.StatusCode.PERMISSION_DENIED, "not an owner")
                    async for _batch in changes:
                        pass
            except trionodes.CuratorError as exc:
                print("the Curator ended the watch:", exc.status.name, exc.details)


trio.run(main)
