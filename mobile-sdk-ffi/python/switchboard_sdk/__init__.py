"""The Switchboard SDK: its uniffi-generated bindings, re-exported.

scripts/bindings puts this file, the generated module (switchboard_sdk.py)
and libswitchboard_sdk.so into target/bindings/python/switchboard_sdk/, so
`import switchboard_sdk` gives the whole API.

At interpreter exit the SDK stops delivering events, and waits for a listener
call in progress, so an app may exit without signing out. An SDK thread that
called into Python later, once the interpreter had started tearing itself
down, would abort the process ("FATAL: exception not rethrown").
"""

import atexit as _atexit

from .switchboard_sdk import *  # noqa: F401,F403
from .switchboard_sdk import __all__, shutdown as _shutdown

# atexit handlers run after the app's non-daemon threads have ended but before
# the interpreter bars other threads from taking the GIL; shutdown() releases
# the GIL while it waits (the library is a ctypes CDLL), so a listener call in
# progress can still finish. Handlers run last-registered first: an app's own
# handler registered after this import (an async sign-out, say) runs before.
_atexit.register(_shutdown)
