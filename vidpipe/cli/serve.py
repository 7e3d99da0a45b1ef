"""``vidpipe serve``: the service on uvicorn, with signals: SIGTERM/SIGINT finish every output and exit,
SIGHUP reloads the configuration and applies only its differences."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from ..errors import VidpipeError
from ..redact import printable

log = logging.getLogger("vidpipe.serve")


class MissingExtraError(VidpipeError):
    """The ``serve`` extra is not installed."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(host: str, configured: list[str]) -> set[str]:
    """The names the service accepts in a request's Host header besides IP addresses and localhost:
    ``--host``, ``web.hosts`` and, listening beyond this machine, its own names."""
    names = {host, *configured}
    if not _loopback(host):
        names |= {socket.gethostname(), socket.getfqdn()}
    return names


TOKEN_ENV = "VIDPIPE_TOKEN"
MIN_TOKEN = 8


def _token(args: argparse.Namespace, configured: str | None) -> str | None:
    """The API token: ``--token-file``, else ``--token`` (a warning: any local user reads a command
    line), else ``$VIDPIPE_TOKEN``, else ``auth.token``; None without one."""
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise VidpipeError(f"--token-file {args.token_file}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise VidpipeError(f"--token-file {args.token_file}: not a text file") from None
        where = f"--token-file {args.token_file}"
    elif args.token is not None:
        log.warning("--token shows the token to every local user (ps, /proc/PID/cmdline); set %s or use "
                    "--token-file instead", TOKEN_ENV)  # fmt: skip
        token, where = args.token, "--token"
    elif os.environ.get(TOKEN_ENV):
        token, where = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return configured
    if len(token) < MIN_TOKEN:
        raise VidpipeError(f"{where}: the token is too short (at least {MIN_TOKEN} characters)")
    return token


def _check_port(host: str, port: int) -> None:
    """Say it in one line when the address is taken or cannot be used (before the model loads)."""
    if not 0 <= port <= 65535:  # (bind() would raise OverflowError)
        raise VidpipeError(f"--port must be 0 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise VidpipeError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
        except ValueError as exc:  # a NUL in the host name
            raise VidpipeError(f"--host {host!r}: cannot listen there ({exc})") from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        from ..serve.app import create_app
        from ..serve.config import ConfigError, StateFile, load_config, state_path_for
        from ..serve.connections import guarded
        from ..serve.service import Service, prepare_output_dir
    except ImportError as exc:
        raise MissingExtraError(
            f"vidpipe serve needs the serve extra ({exc.name} is missing): pip install 'vidpipe[serve]'"
        ) from None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"vidpipe: error: {printable(line)}", file=sys.stderr)
        return 2
    if args.check:  # validate (the file, and the API's state file beside it) and exit: nothing starts
        if args.config is None:
            raise VidpipeError("--check needs --config FILE")
        try:
            StateFile(args.state or state_path_for(args.config)).load()
            prepare_output_dir(Path(config.output_dir), f"{args.config}: ", make=False)
        except ConfigError as exc:
            for line in exc.problems:
                print(f"vidpipe: error: {printable(line)}", file=sys.stderr)
            return 2
        print(f"vidpipe: {args.config}: valid ({len(config.streams)} stream(s))", flush=True)
        return 0
    token = _token(args, config.auth.token)
    if not _loopback(args.host) and token is None and not args.insecure:
        raise VidpipeError(
            f"--host {args.host}: refusing to listen beyond this machine without a token; set VIDPIPE_TOKEN, "
            "--token-file or auth.token (or --insecure to serve without one)"
        )
    _check_port(args.host, args.port)
    state = args.state or state_path_for(args.config)
    try:
        service = Service(config, config_path=args.config, state_path=state)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"vidpipe: error: {printable(line)}", file=sys.stderr)
        return 2
    service.connect()
    app = create_app(service, token=token, hosts=_names(args.host, config.web.hosts))

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # viewers' streams end at once, then the rest
            service.stopping.set()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # a clean stop exits 0 (uvicorn would raise the signal again)

    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            http=guarded(AutoHTTPProtocol),  # stalled clients are dropped (serve/connections.py)
        )
    )

    def reload(_signum: int, _frame: object) -> None:
        threading.Thread(target=service.reload, name="vidpipe-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload)
    where = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/"
    if not args.quiet:
        print(f"vidpipe: serving {len(service.desired())} stream(s) at {where} (API docs at {where}docs)", flush=True)
    server.run()
    if not server.started:
        return 1
    if not args.quiet:
        print("vidpipe: stopped; every output finished", flush=True)
    return 0
