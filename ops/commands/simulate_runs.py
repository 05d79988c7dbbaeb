"""The loop over the policies `tidegate simulate` runs, shared by one model's runs
(``simulate.py``) and the shared fleet's (``simulate_fleet.py``)."""

from __future__ import annotations

import time


def each_policy(names, cfg, params: dict, requests: int, log, config_run, preset_run) -> list:
    """Each policy of ``names`` run: ``config`` as ``config_run(cfg.spec)``, a preset as
    ``preset_run(name, params)`` (the optimum without them); a bad value a one-line error; a
    log line each (one model's runs, and the shared fleet's: ``simulate_fleet.py``)."""
    from ops.cli import CliError

    results = []
    for name in names:
        t0 = time.perf_counter()
        try:
            if name == "config":
                if cfg.spec is None:
                    raise CliError(
                        "--policy config: the --config file sets no routing_policy or [autoscaling]"
                    )
                res = config_run(cfg.spec)
            else:
                res = preset_run(name, params if name != "optimum" else None)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, TypeError) and not params:
                raise  # not a value the user gave: a defect, with its traceback
            given = ", ".join(f"{k}={v}" for k, v in params.items())
            raise CliError(f"{exc} (--param {given})" if params else str(exc)) from None
        if log:  # (the wall time only here: in the JSON it made two runs' files differ)
            log(f"  {name}: {requests} requests in {time.perf_counter() - t0:.1f} s")
        results.append(res)
    return results
