"""The SDK's Python bindings against a real server (tests/tests/bindings.rs
starts it and sets SB_HTTP, SB_SMS, SB_ROBOT_ID, SB_ROBOT_SECRET)."""

import asyncio
import json
import os
import urllib.parse
import urllib.request

import switchboard_sdk as sb

WAIT = 10.0


class Events(sb.Listener):
    """The SDK calls on_event from its own thread; hand it to asyncio."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue()

    def on_event(self, event):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def until(self, what, pick):
        async def scan():
            while True:
                found = pick(await self.queue.get())
                if found is not None:
                    return found

        try:
            return await asyncio.wait_for(scan(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {WAIT} s") from None


def sms_code(phone):
    """The one-time code the server sent to the SMS webhook."""
    url = os.environ["SB_SMS"] + "/code?" + urllib.parse.urlencode({"phone": phone})
    with urllib.request.urlopen(url, timeout=WAIT) as r:
        return r.read().decode()


def config(device):
    """The server from the environment; over TLS, trusting SB_CA_FILE's roots."""
    return sb.Config(http_url=os.environ["SB_HTTP"], mqtt_url=None, device=device,
                     ca_file=os.environ.get("SB_CA_FILE"))


async def sign_in(loop, phone, device):
    client = sb.Switchboard(config(device))
    e164 = await client.request_code(phone)
    events = Events(loop)
    session = await client.sign_in(phone, sms_code(e164), events)
    return session, events


def presence_of(user_id, online):
    return lambda e: True if e.is_presence() and e.presence.user_id == user_id and e.presence.online == online else None


def call_state(sid, state):
    return lambda e: e.call if e.is_call_state() and e.call.sid == sid and e.call.state == state else None


def incoming(e):
    return e.call if e.is_incoming_call() else None


async def expect_error(kind, coro):
    try:
        await coro
    except kind as e:
        return e
    raise AssertionError(f"expected {kind.__name__}")


async def main():
    loop = asyncio.get_running_loop()
    a, a_events = await sign_in(loop, "+48555000401", "phone")
    b, b_events = await sign_in(loop, "+48555000402", "tablet")
    print("signed in", a.user_id(), b.user_id())

    await a.set_contacts([b.user_id()])
    await b.set_contacts([a.user_id()])
    await a.watch(b.user_id())
    await b.watch(a.user_id())
    await a_events.until("B online", presence_of(b.user_id(), True))
    await b_events.until("A online", presence_of(a.user_id(), True))
    print("online: each sees the other")

    sid = await a.call(b.user_id(), sb.CallKind.VIDEO)
    call = await b_events.until("incoming call", incoming)
    assert call.sid == sid and call.caller == a.user_id(), call
    accepted = await b.accept(sid)
    assert accepted.state == sb.CallStateKind.ACCEPTED, accepted
    assert accepted.accepted_by == b.client_id(), accepted
    await a_events.until("accepted", call_state(sid, sb.CallStateKind.ACCEPTED))
    ended = await a.hangup(sid)
    assert ended.reason == sb.EndReason.HANGUP, ended
    print("call", sid, "accepted and hung up")

    robot_events = Events(loop)
    robot = await sb.Switchboard(config(None)).sign_in_robot(
        os.environ["SB_ROBOT_ID"], os.environ["SB_ROBOT_SECRET"], robot_events
    )
    pairing = await robot.start_pairing()
    code = pairing.code().code
    assert await a.pair(code) == robot.user_id()
    assert await pairing.wait() == a.user_id()
    print("paired with code", code)

    sid = await a.call(robot.user_id(), sb.CallKind.VIDEO)
    call = await robot_events.until("robot's incoming call", incoming)
    await robot.accept(call.sid)
    await a_events.until("robot accepted", call_state(sid, sb.CallStateKind.ACCEPTED))
    pending = await a.send_command(sid, "moveTo", json.dumps({"destination": "kitchen"}))
    request = await robot_events.until("command", lambda e: e.request if e.is_command_request() else None)
    assert request.command == "moveTo" and json.loads(request.arguments_json) == {"destination": "kitchen"}
    for status in ["moving", "arrived"]:
        robot.respond(sid, "moveTo", request.request_id, status, "{}")
        reply = await pending.next_reply(10_000)
        assert reply.status == status, reply
    await a.hangup(sid)
    print("robot moved: moving, arrived")

    await expect_error(sb.SdkError.InvalidPhone, sb.Switchboard(
        config("x")).request_code("not a number"))
    await expect_error(sb.SdkError.UnknownUser, a.call("0" * 32, sb.CallKind.AUDIO))
    await expect_error(sb.SdkError.NoCall, a.send_command("1" * 32, "moveTo", ""))
    await expect_error(sb.SdkError.InvalidArgument, a.pair("12"))
    try:
        sb.Switchboard(sb.Config(http_url=os.environ["SB_HTTP"], mqtt_url=None, device=None,
                                 ca_file="/no/such/ca.pem"))
        raise AssertionError("a CA file that is not there was taken")
    except sb.SdkError.InvalidArgument:
        pass
    print("bad input: typed errors")

    for s in (a, b, robot):
        await s.sign_out()

    # What the package does at interpreter exit; a second call is harmless,
    # and no session starts afterwards.
    sb.shutdown()
    sb.shutdown()
    await expect_error(sb.SdkError.ShutDown, sb.Switchboard(
        config(None)).sign_in_robot(
        os.environ["SB_ROBOT_ID"], os.environ["SB_ROBOT_SECRET"], Events(loop)))
    print("shut down: no new session")
    print("ALL PASSED")


asyncio.run(main())
