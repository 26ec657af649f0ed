"""The Switchboard SDK: its uniffi-generated bindings, re-exported.

scripts/bindings puts this file, the generated module (switchboard_sdk.py)
and libswitchboard_sdk.so into target/bindings/python/switchboard_sdk/, so
`import switchboard_sdk` gives the whole API.

At interpreter exit the SDK stops delivering events, and waits for any SDK
thread still running Python code (a listener call, or the wake-up of an
awaited call), so an app may exit without signing out. An SDK thread that
ran Python once the interpreter had started tearing itself down would
abort the process ("FATAL: exception not rethrown").
"""

import atexit as _atexit
import threading as _threading

from . import switchboard_sdk as _ffi
from .switchboard_sdk import *  # noqa: F401,F403
from .switchboard_sdk import __all__, shutdown as _shutdown

# An awaited SDK call resumes through uniffi's continuation callback, which
# an SDK thread runs; it wakes the event loop with a socket write, letting go
# of the GIL meanwhile. The main thread may then finish the program (it did
# not need that wake-up) and start tearing the interpreter down before the
# SDK thread takes the GIL back. So the callbacks in progress are counted,
# and the exit waits for them (uniffi is pinned, so its name is stable).
_in_progress = 0
_idle = _threading.Condition()
_resume = _ffi._uniffi_continuation_callback


@_ffi._UNIFFI_RUST_FUTURE_CONTINUATION_CALLBACK
def _counted_resume(future_ptr, poll_code):
    global _in_progress
    with _idle:
        _in_progress += 1
    try:
        _resume(future_ptr, poll_code)
    finally:
        with _idle:
            _in_progress -= 1
            _idle.notify_all()


_ffi._uniffi_continuation_callback = _counted_resume


def _at_exit():
    _shutdown()
    # Waiting on the condition lets go of the GIL, so a callback caught
    # mid-way can finish; a stuck one must not hang the exit.
    with _idle:
        _idle.wait_for(lambda: _in_progress == 0, timeout=5.0)


# atexit handlers run after the app's non-daemon threads have ended but before
# the interpreter bars other threads from taking the GIL; shutdown() releases
# the GIL while it waits (the library is a ctypes CDLL), so a listener call in
# progress can still finish. Handlers run last-registered first: an app's own
# handler registered after this import (an async sign-out, say) runs before.
_atexit.register(_at_exit)
