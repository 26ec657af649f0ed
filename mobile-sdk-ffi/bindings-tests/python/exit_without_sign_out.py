"""Signs the provisioned robot in and exits WITHOUT signing out
(tests/tests/bindings.rs runs it many times, with SB_HTTP, SB_ROBOT_ID and
SB_ROBOT_SECRET set). The session's last event, SignedOut, comes from an
SDK thread a few ms after the session is freed, racing the interpreter's
exit; before the package's atexit hook called the SDK's shutdown(), a call
into a finalizing interpreter aborted the process ("FATAL: exception not
rethrown"). Prints EXITING as its last step.

    exit_without_sign_out.py busy    the session is freed just before exit
                                     while the listener spends 100 ms on
                                     SignedOut: a listener call is in
                                     progress when the interpreter exits
    exit_without_sign_out.py global  the session sits in a module global, so
                                     it is freed during interpreter teardown
    exit_without_sign_out.py idle    an ordinary app: a local session, a
                                     quick listener
"""

import asyncio
import gc
import os
import queue
import sys
import threading
import time

import switchboard_sdk as sb

WAIT = 10.0
MODES = ("busy", "global", "idle")

# The global mode's session, freed by the interpreter's teardown.
SESSION = None


def is_state(event, state):
    return event.is_connection() and event.state == state


class Events(sb.Listener):
    """A thread-safe queue: needs no event loop, and never raises at exit."""

    def __init__(self, busy):
        self.queue = queue.SimpleQueue()
        self.busy = busy
        self.busy_started = threading.Event()

    def on_event(self, event):
        if self.busy and is_state(event, sb.ConnectionState.SIGNED_OUT):
            self.busy_started.set()
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                pass
        self.queue.put(event)

    def wait_connected(self):
        deadline = time.monotonic() + WAIT
        while True:
            try:
                event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not connected within {WAIT} s") from None
            if is_state(event, sb.ConnectionState.CONNECTED):
                return


async def sign_in(events):
    client = sb.Switchboard(sb.Config(http_url=os.environ["SB_HTTP"], mqtt_url=None, device=None))
    return await client.sign_in_robot(os.environ["SB_ROBOT_ID"], os.environ["SB_ROBOT_SECRET"], events)


def main(mode):
    global SESSION
    events = Events(busy=mode == "busy")
    session = asyncio.run(sign_in(events))
    events.wait_connected()
    print("connected as", session.user_id(), flush=True)
    if mode == "global":
        SESSION = session
    elif mode == "busy":
        del session
        gc.collect()
        # Exit while the listener is still busy with SignedOut.
        if not events.busy_started.wait(WAIT):
            raise AssertionError(f"no SignedOut within {WAIT} s of freeing the session")
    # idle: the session is freed when main returns, just before exit.
    print("EXITING", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(MODES)}}}")
    main(sys.argv[1])
