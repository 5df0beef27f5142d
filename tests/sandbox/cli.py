"""scripts/sandbox: the clouds of lxcri.cloud on 127.0.0.1 (see shared/design.md, "The sandbox").

  up [--latency-ms N] [--provision-seconds N]  start (or keep) every emulator and the proxy; returns when ready
  env                                          export lines pointing SDKs and the collection at the sandbox
  state                                        JSON {provider: {resource_type: [ids]}} of live resources
  requests [--reset]                           JSON {provider: {operation: count}} (--reset: then zero them)
  faults PROVIDER [--error-rate R] [--throttle-rate R] [--reset-rate R] [--latency-ms N] [--seed S] [--reset]
  alarm-state PROVIDER NAME STATE              make alarm NAME show STATE (alarm|ok|insufficient_data) to alarm_info
  reset                                        forget every resource, zero the counters, clear the faults
  down                                         stop everything

Options of `up` are declarative: an option left out means its default (0), and `up` changes (restarting
what it must) whatever differs from the running sandbox. Ports: SANDBOX_PORT_OFFSET; state: SANDBOX_DIR;
SANDBOX_RECORD_DIR (at `up`, like an option): our own emulators append every exchange to <dir>/<provider>.jsonl
for `python -m tests.sandbox.conformance <dir>`.
"""
import argparse
import json
import os
import shlex
import sys
import time
import urllib.error

from tests.sandbox import registry, runtime
from tests.sandbox.proxy import ERROR_HEADER, PROBE

PROXY_SOURCES = ("tests/sandbox/proxy.py", "tests/sandbox/registry.py", "tests/sandbox/aws.py",
                 "tests/sandbox/pve.py", "tests/sandbox/own.py")
START_TIMEOUT = 60.0


class SandboxError(Exception):
    """A failure to report in one line (and exit 1)."""


def _wait(what, check, deadline, process=None, ctx=None, name=None):
    """Poll check() until it is true; SandboxError if the deadline passes or the process dies first."""
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if process is not None and process.poll() is not None:
            raise SandboxError(f"{what} exited with {process.returncode}:\n{runtime.log_tail(ctx, name)}")
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} not ready after {START_TIMEOUT:.0f} s; see {ctx.dir}/logs/{name}.log")
        time.sleep(0.03)


def _ready(ctx, provider):
    url = provider.ready_url(ctx) if provider.ready_url else ctx.backend_url(provider.name) + provider.health_path
    return 200 <= runtime.http(url, timeout=2)[0] < 300


def _answers_through_proxy(ctx, provider):
    url = ctx.public_url(provider.name) + provider.health_path
    status, headers, _ = runtime.http(url, headers={PROBE: "1"}, ca=ctx.ca, timeout=2)
    return not headers.get(ERROR_HEADER)


def cmd_up(args):
    began = time.monotonic()
    ctx = runtime.Context(provision_seconds=args.provision_seconds)
    os.makedirs(ctx.dir, exist_ok=True)
    if runtime.ensure_tls(ctx):  # a new CA: whatever serves the old certificate goes
        runtime.stop(ctx, runtime.records(ctx))
    runtime.ensure_secrets(ctx)
    known = {p.name for p in registry.PROVIDERS} | {runtime.PROXY}
    runtime.stop(ctx, [name for name in runtime.records(ctx) if name not in known])

    started, kept = {}, []
    for provider in registry.PROVIDERS:
        argv, extra = provider.command(ctx)
        config = runtime.digest(argv, extra, runtime.fingerprint(provider.sources))
        record = runtime.running(ctx, provider.name)
        if record and record["config"] == config:
            kept.append(provider.name)
            continue
        runtime.stop(ctx, [provider.name])
        started[provider.name] = runtime.spawn(ctx, provider.name, argv, extra, config)

    names = [p.name for p in registry.PROVIDERS]
    argv = [ctx.python, "-m", "tests.sandbox.proxy", "--dir", ctx.dir, "--offset", str(ctx.offset),
            "--providers", ",".join(names)]
    sources = PROXY_SOURCES + tuple(s for p in registry.PROVIDERS for s in p.sources)
    config = runtime.digest(argv, runtime.fingerprint(sources))
    record = runtime.running(ctx, runtime.PROXY)
    proxy = None
    if not (record and record["config"] == config):
        runtime.stop(ctx, [runtime.PROXY])
        proxy = runtime.spawn(ctx, runtime.PROXY, argv + ["--latency-ms", str(args.latency_ms)], {}, config)

    deadline = time.monotonic() + START_TIMEOUT
    for provider in registry.PROVIDERS:
        process = started.get(provider.name)
        _wait(provider.name, lambda: _ready(ctx, provider), deadline, process, ctx, provider.name)
        if provider.configure:
            provider.configure(ctx)
    _wait("the proxy", lambda: runtime.control(ctx, "/health")["ok"], deadline, proxy, ctx, runtime.PROXY)
    runtime.control(ctx, "/config", {"latency_ms": args.latency_ms})
    for provider in registry.PROVIDERS:
        _wait(f"{provider.name} through the proxy", lambda: _answers_through_proxy(ctx, provider), deadline, proxy,
              ctx, runtime.PROXY)
    for provider in registry.PROVIDERS:
        how = "kept" if provider.name in kept else "started"
        print(f"{provider.name:<13} {ctx.public_url(provider.name):<26} {how}")
    print(f"{'proxy':<13} {ctx.control_url:<26} {'started' if proxy else 'kept'} (control API)")
    if ctx.record_dir:
        print(f"our own emulators record their exchanges in {ctx.record_dir}/<provider>.jsonl")
    print(f"sandbox up in {time.monotonic() - began:.1f} s (state in {ctx.dir}); "
          f"eval \"$(scripts/sandbox env)\" to use it")


def _context_of_running_sandbox():
    ctx = runtime.Context()
    if not runtime.running(ctx, runtime.PROXY):
        raise SandboxError(f"the sandbox is not up (state dir {ctx.dir}): run scripts/sandbox up")
    return ctx


def cmd_env(args):
    ctx = runtime.Context()
    missing = [p.name for p in registry.PROVIDERS if p.name not in ctx.secrets]
    if missing:
        raise SandboxError(f"no credentials for {', '.join(missing)} yet: run scripts/sandbox up")
    for provider in registry.PROVIDERS:
        for name, value in provider.env(ctx).items():
            print(f"export {name}={shlex.quote(str(value))}")


def cmd_state(args):
    ctx = _context_of_running_sandbox()
    print(json.dumps({p.name: p.state(ctx) for p in registry.PROVIDERS}, indent=2, sort_keys=True))


def cmd_requests(args):
    ctx = _context_of_running_sandbox()
    counts = runtime.control(ctx, "/requests/reset", {}) if args.reset else runtime.control(ctx, "/requests")
    print(json.dumps(counts, indent=2, sort_keys=True))


def cmd_faults(args):
    ctx = _context_of_running_sandbox()
    payload = {"provider": args.provider, "reset": args.reset, "error_rate": args.error_rate,
               "throttle_rate": args.throttle_rate, "reset_rate": args.reset_rate, "latency_ms": args.latency_ms,
               "seed": args.seed, "retry_after": args.retry_after}
    print(json.dumps(runtime.control(ctx, "/faults", payload), indent=2, sort_keys=True))


def cmd_alarm_state(args):
    ctx = _context_of_running_sandbox()
    provider = registry.get(args.provider)
    if provider.force_alarm is None:
        raise SandboxError(f"{args.provider} has no alarms to force (no native metric alerting)")
    print(json.dumps(provider.force_alarm(ctx, args.name, args.state), indent=2, sort_keys=True))


def cmd_reset(args):
    ctx = _context_of_running_sandbox()
    for provider in registry.PROVIDERS:
        provider.reset(ctx)
        if provider.configure:
            provider.configure(ctx)
    runtime.control(ctx, "/requests/reset", {})
    runtime.control(ctx, "/faults", {"provider": "all", "reset": True})
    runtime.control(ctx, "/scopes/reset", {})
    print("sandbox reset: no resources, no requests counted, no faults")


def cmd_down(args):
    ctx = runtime.Context()
    runtime.stop(ctx, [runtime.PROXY])
    runtime.stop(ctx, runtime.records(ctx))
    runtime.forget_secrets(ctx)
    print("sandbox down")


def _parser():
    parser = argparse.ArgumentParser(prog="scripts/sandbox", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start every emulator and the proxy (idempotent)")
    up.add_argument("--latency-ms", type=float, default=0.0, help="added to every request of every provider")
    up.add_argument("--provision-seconds", type=float, default=0.0, help="how long new machines take (0: instant)")
    up.set_defaults(run=cmd_up)
    commands.add_parser("env", help="export lines (the only command that prints secrets)").set_defaults(run=cmd_env)
    commands.add_parser("state", help="JSON: live resources per provider").set_defaults(run=cmd_state)
    requests = commands.add_parser("requests", help="JSON: request counts per provider and operation")
    requests.add_argument("--reset", action="store_true", help="zero the counters after printing them")
    requests.set_defaults(run=cmd_requests)
    faults = commands.add_parser("faults", help="inject faults in front of one provider (or all)")
    faults.add_argument("provider", choices=[p.name for p in registry.PROVIDERS] + ["all"])
    faults.add_argument("--error-rate", type=float, help="share of requests answered 500 or 503")
    faults.add_argument("--throttle-rate", type=float, help="share of requests answered 429 with Retry-After")
    faults.add_argument("--reset-rate", type=float, help="share of connections reset with no answer")
    faults.add_argument("--latency-ms", type=float, help="added to each request of this provider")
    faults.add_argument("--seed", type=int, help="make the draws repeatable")
    faults.add_argument("--retry-after", type=int, help="seconds in Retry-After (default 1)")
    faults.add_argument("--reset", action="store_true", help="clear this provider's faults first")
    faults.set_defaults(run=cmd_faults)
    alarm = commands.add_parser("alarm-state", help="make an alarm show a state (as CloudWatch set_alarm_state)")
    alarm.add_argument("provider", choices=[p.name for p in registry.PROVIDERS])
    alarm.add_argument("name", help="the alarm's name as given to lxcri.cloud.alarm")
    alarm.add_argument("state", choices=["alarm", "ok", "insufficient_data"])
    alarm.set_defaults(run=cmd_alarm_state)
    commands.add_parser("reset", help="forget all resources, counters and faults").set_defaults(run=cmd_reset)
    commands.add_parser("down", help="stop everything (idempotent)").set_defaults(run=cmd_down)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command in ("up", "reset", "down"):
            with runtime.exclusive(runtime.Context()):
                args.run(args)
        else:
            args.run(args)
    except (SandboxError, RuntimeError, OSError, urllib.error.URLError) as exc:
        print(f"sandbox {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
