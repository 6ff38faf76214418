"""Keep OpenVINO's and NNCF's usage telemetry off.

Both send usage events unless the user opted out. This toolkit runs where medical images are
processed, often without internet (each event then forks a sender that waits seconds for a
timeout). It records the opt-out in the vendor's own consent file — what
``opt_in_out --opt_out`` writes, minus the event that command sends. An earlier explicit
choice of the user is left as it is.
"""

from __future__ import annotations

import os


def opt_out_of_openvino_telemetry() -> bool:
    """Write the "declined" consent file when none exists; True when telemetry is now off."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return True  # no telemetry package, no telemetry
    checker = OptInChecker()
    if checker.consent_file_base_dir() is None:
        return True  # openvino_telemetry itself then declines
    if os.path.exists(checker.consent_file()):
        return checker.check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED
    return checker.update_result(ConsentCheckResult.DECLINED)
