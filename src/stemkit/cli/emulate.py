"""``stemkit emulate NAME``: serve a provider's emulator on loopback for offline CI.

Emulators are found through the entry-point group ``stemkit.emulators`` (the core never imports a plugin by
name). The first line on stdout is the base URL (ending in the API path, e.g. ``/api/v1``); then, for an
emulator that names them, the environment a provider needs to use it (``export STEMSPLIT_BASE_URL=…`` and
``export STEMSPLIT_API_KEY=…``, the key being the one the emulator accepts: ``--api-key`` or its own); the
server runs until interrupted.
"""

from __future__ import annotations

import typer

from stemkit.errors import ConfigError

__all__ = ["emulate_command", "register"]


def register(app: typer.Typer) -> None:
    app.command("emulate")(emulate_command)


def _options(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def emulate_command(
    name: str = typer.Argument(..., metavar="NAME", help="The provider whose emulator to serve, e.g. stemsplit."),
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="HOST",
        help="Interface to listen on (loopback by default)."
    ),
    port: int = typer.Option(0, "--port", metavar="PORT", help="Port to listen on; 0 picks a free one."),
    api_key: str | None = typer.Option(
        None, "--api-key", metavar="KEY", help="The key the emulator accepts (default: its own, printed at start)."
    ),
    processing_seconds: float | None = typer.Option(
        None, "--processing-seconds", metavar="SECONDS", min=0.0, help="How long each job stays PROCESSING."
    ),
    fault: list[str] = typer.Option(
        [], "--fault", metavar="FAULT",
        help="Inject a fault, e.g. '429:count=2,retry_after=0', '5xx=0.2', 'latency=0.05'. Repeatable."
    ),
    option: list[str] = typer.Option(
        [], "--option", metavar="KEY=VALUE",
        help="An emulator-specific setting KEY=VALUE (see the emulator's docs). Repeatable."
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed for faults given as a rate."),
) -> int:
    """Serve NAME's emulator until interrupted; the first stdout line is its base URL.

    \f
    A fault the emulator does not implement is refused (exit 2) with the list of those it does. Ctrl-C,
    SIGTERM and SIGHUP stop it cleanly: its storage (uploads, stems) is removed and the exit status is 0.
    """
    from stemkit.registry import EMULATOR_GROUP, load_entry_point

    try:
        from stemkit.hosted.emulator import EmulatorSettings, listen, serve
        from stemkit.hosted.faults import FaultPlan, check_supported
    except ImportError as exc:  # starlette / uvicorn missing
        raise ConfigError(f"emulators need the 'emulators' extra (pip install 'stemkit[emulators]'): {exc}") from None

    emulator = load_entry_point(EMULATOR_GROUP, name, what="emulator")
    plan = FaultPlan.parse(fault, seed=seed)
    kinds = getattr(emulator, "fault_kinds", None)
    if plan and kinds is None:
        raise ConfigError(f"the {name} emulator does not say which faults it implements; run it without --fault")
    check_supported(plan, kinds or (), emulator=name)
    settings = EmulatorSettings(
        api_key=api_key, processing_seconds=processing_seconds, faults=plan, options=_options(option)
    )
    sock = listen(host, port)
    try:
        app = emulator.create_app(settings)
    except BaseException:
        sock.close()
        raise
    key = api_key or getattr(emulator, "default_api_key", None)
    serve(app, api_path=str(emulator.api_path), sock=sock, announce=lambda url: _announce(url, emulator, key))
    return 0


def _announce(base_url: str, emulator: object, key: str | None) -> None:
    """The base URL first (scripts read that line), then what to set so the provider talks to the emulator.

    The key is the emulator's, never a real one, so printing it is the point: a user cannot guess it.
    """
    lines = [base_url]
    url_env, key_env = getattr(emulator, "base_url_env", None), getattr(emulator, "api_key_env", None)
    if url_env:
        lines.append(f"export {url_env}={base_url}")
    if key:
        lines.append(f"export {key_env}={key}" if key_env else f"api key: {key}")
    print("\n".join(lines), flush=True)
