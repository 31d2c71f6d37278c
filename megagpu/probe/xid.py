"""XID errors from an NVML event set, waited on in a daemon thread.

XIDs are NVIDIA driver error reports. The last one per device is kept for the DCGM XID family;
the ones that mean the hardware failed (ECC double-bit and uncorrectable errors, row-remapping
failures, NVLink errors, a GPU fallen off the bus, GSP errors) make the device unhealthy until
the probe's health gate sees it healthy again. Application faults (XID 13, 31, 43, ...) do not.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

LOG = logging.getLogger("megagpu.probe.xid")
FATAL = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120})
WAIT_MS = 1000


class XidWatcher:
    """Registers every device for critical XID events and records what arrives."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self.last: dict[str, int] = {}
        """Device UUID -> value of the last XID seen (0: none since the probe started)."""
        self.fatal: dict[str, int] = {}
        """Device UUID -> a hardware-failure XID not yet reported (the next read takes it)."""
        self.error = ""
        """Why watching is off, or empty while it runs."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the thread waits for events."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, handles: dict[str, Any]) -> bool:
        """Watch the devices (UUID -> NVML handle); False (with ``error``) when not possible."""
        nvml = self._nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
            for uuid, handle in handles.items():
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
                self.last.setdefault(uuid, 0)
        except (AttributeError, nvml.NVMLError) as e:
            self.error = f"XID events unavailable: {e}"
            return False
        self._thread = threading.Thread(
            target=self._run, args=(event_set,), name="megagpu-xid", daemon=True
        )
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop waiting (the thread exits within one wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * WAIT_MS / 1000)

    def _run(self, event_set: Any) -> None:
        nvml = self._nvml
        try:
            while not self._stop.is_set():
                try:
                    data = nvml.nvmlEventSetWait_v2(event_set, WAIT_MS)
                except nvml.NVMLError_Timeout:
                    continue
                uuid = nvml.nvmlDeviceGetUUID(data.device)
                uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
                xid = int(data.eventData)
                self.last[uuid] = xid
                if xid in FATAL:
                    self.fatal[uuid] = xid
                LOG.warning("XID %d on %s", xid, uuid)
        except nvml.NVMLError as e:
            self.error = f"XID watching stopped: {e}"
            LOG.warning("%s", self.error)
        finally:
            try:
                nvml.nvmlEventSetFree(event_set)
            except nvml.NVMLError:
                pass
