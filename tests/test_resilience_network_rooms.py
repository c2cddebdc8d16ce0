"""The caller's network drops for 5 s (its veth pair goes down, then up): the
room connection resumes, the same agent is still there, the conversation goes on.
A caller whose network drops UDP is served over ICE/TCP."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.testing.harness import Testbed, ask_name, greeted, introduce, room_name
from agent.testing.netns import SERVER_IP
from agent.testing.remote import IsolatedLink, RemoteCaller
from agent.tools import Ledger, Store

pytestmark = [pytest.mark.room, pytest.mark.background]  # waits out a network drop, generous bounds: in a background lane (scripts/lanes.sh)

DROP_S = 5.0


async def test_caller_network_drop_resumes_with_the_same_agent_and_conversation(testbed: Testbed) -> None:
    room = room_name("netdrop")
    with IsolatedLink(index=1) as link:
        async with RemoteCaller(link, testbed.url, testbed.token(room, "caller")) as caller:
            await greeted(caller)
            await introduce(caller)
            agents_before = [p for p in (await caller.state())["remote"] if p.startswith("agent")]

            port = int(testbed.url.rsplit(":", 1)[1])
            assert link.reaches(SERVER_IP, port)
            link.down()
            cut = not await asyncio.to_thread(link.reaches, SERVER_IP, port)
            await asyncio.sleep(DROP_S - 1.0)
            link.up()
            back = time.time()

            await caller.send_chat("I'd like two lattes")
            said = await caller.wait_for_transcript(r"order number \d+ is placed", timeout=40, after=back)
            await caller.wait_for_quiet(1.0, timeout=30)
            await ask_name(caller)
            state = await caller.state()

    agents_after = [p for p in state["remote"] if p.startswith("agent")]
    events = [name for name, _ in state["events"]]
    print(f"\n[figure] caller network down {DROP_S:.0f}s: room events {events}; "
          f"order confirmed {said['time'] - back:.1f}s after the network came back")
    assert cut, "the caller could still reach livekit-server with its link down"
    assert agents_before and agents_after == agents_before, "the agent should still be the same participant"
    assert "disconnected" not in events
    orders = Store(testbed.db_path).orders(room=room)
    assert len(orders) == 1, f"expected exactly one order row, got {orders}"
    assert len([e for e in Ledger(testbed.db_path).entries("place_order") if e.room == room]) == 1


async def test_a_caller_whose_network_drops_udp_is_served_over_tcp(testbed: Testbed) -> None:
    """Networks that let only TCP out (many company firewalls) reach the agent
    through livekit-server's ICE/TCP candidate. It is also where livekit-server
    moves a call whose ICE failed soon after a resume: when ICE/TCP did not work
    here, the web page's network-drop test failed whenever that happened."""
    room = room_name("tcponly")
    with IsolatedLink(index=4) as link:
        link.block_udp()
        async with RemoteCaller(link, testbed.url, testbed.token(room, "caller")) as caller:
            await greeted(caller)
    assert testbed.livekit is not None
    active = [line for line in testbed.livekit.log_text().splitlines() if "participant active" in line and f'"room": "{room}"' in line]
    caller_line = next((line for line in active if '"participant": "caller"' in line), "")
    assert '"connectionType": "tcp"' in caller_line, f"the caller's connection was not over TCP: {caller_line or active}"
