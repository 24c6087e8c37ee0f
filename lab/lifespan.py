"""The one shape of a part that runs beside the web app: listeners, analyser links, jobs.

A starter takes the app and returns an async context manager; `lab.main.create_app` enters
each one when the app starts and leaves them in reverse order when it stops. It lives on the
ground floor so each feature can offer its part without importing the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

Starter = Callable[[FastAPI], AbstractAsyncContextManager[None]]
