#!/usr/bin/env python3
"""The os-brick oracle: os-brick's OWN get_volume_paths, run on a materialized host root.

brickcheck's simulator materializes a host (sysfs, /dev, /etc) under a directory ROOT.  This
script makes the real os-brick library (installed from PyPI) see ROOT as "/" and asks it for a
volume's paths, so a test can compare its answer with `brick paths`.  Nothing of the real host
is read or written and no privilege is needed:

* The filesystem functions os-brick's path code uses (os.path.exists / realpath / islink /
  isdir, os.listdir, os.readlink, glob.glob, and open() for sysfs reads) are replaced, for the
  duration of the call, by versions that resolve absolute paths inside ROOT with chroot
  semantics (absolute symlink targets restart at ROOT, `..` never climbs above it) and
  translate results back to host paths.
* Commands go through the `execute=` callable os-brick's connectors accept; it answers from a
  JSON file of canned outputs that the caller captured from the simulator for exactly this
  tree.  A command without a canned answer is an error (exit 3), never a real process.

Single query:

    osbrick_oracle.py --root ROOT [--protocol iscsi|fc|nvmeof] --props PROPS.json \
        [--multipath] [--commands CMDS.json]

prints a JSON array: the sorted host paths os-brick reports.

Batch (one Python start-up for many queries):

    osbrick_oracle.py --batch JOBS.json

where JOBS.json is a list of {"root", "protocol", "props", "multipath", "commands"} objects
(props and commands inline) and the output is a JSON list with, per job, either
{"paths": [...]} or {"error": "..."}.

Serve (one process for a whole test): `osbrick_oracle.py --serve` reads one such job list per
line on stdin and answers each with one line of results on stdout, until end of input.

PROPS may be the bare `data` dict or the {"driver_volume_type", "data"} wrapper.  CMDS is a
list of {"argv": [...], "status": int, "stdout": str, "stderr": str}.

How each protocol is driven (os-brick 7.x):
* iscsi: InitiatorConnector.factory('ISCSI', None, use_multipath=..., execute=...)
  .get_volume_paths(props).  With use_multipath=False os-brick runs `iscsiadm -m session`.
* fc: the connector's own `_add_targets_to_connection_properties` first (os-brick's
  get_volume_paths raises KeyError on raw Cinder properties), then get_volume_paths.
* nvmeof: get_volume_paths takes an NVMeOFConnProps object, built with find_controllers=True
  (as the connector's own decorator does) so present portals get their controllers.

Exit codes: 0 answered, 2 bad arguments or input, 3 os-brick failed or ran an unknown command.
"""

import argparse
import builtins
import copy
import glob as glob_mod
import json
import logging
import os
import os.path
import stat as stat_mod
import sys
import warnings

# The real functions, captured before anything is redirected: the chroot resolution itself
# must never go through the redirected versions.
_REAL_LSTAT = os.lstat
_REAL_STAT = os.stat
_REAL_READLINK = os.readlink
_REAL_LISTDIR = os.listdir
_REAL_GLOB = glob_mod.glob
_REAL_OPEN = builtins.open
_REAL_REALPATH = os.path.realpath

# os-brick's import chain (oslo.privsep -> eventlet) warns on import; keep stderr readable.
warnings.simplefilter("ignore")

try:
    from oslo_concurrency import processutils
    from os_brick.initiator import connector as osb_connector
    # Import every connector module now: the factory imports lazily, and imports must not run
    # while the filesystem functions are redirected.
    from os_brick.initiator.connectors import fibre_channel as _osb_fc  # noqa: F401
    from os_brick.initiator.connectors import iscsi as _osb_iscsi  # noqa: F401
    from os_brick.initiator.connectors import nvmeof as osb_nvmeof
    from os_brick.privileged import nvmeof as priv_nvme
    import os_brick
except ImportError as exc:  # pragma: no cover - reported to the caller
    print(f"os_brick is not importable with {sys.executable}: {exc}", file=sys.stderr)
    sys.exit(2)

MAX_LINKS = 40


class OracleError(Exception):
    """The oracle could not answer (unknown command, path escaping the root...)."""


class ChrootFs:
    """Path resolution inside ROOT as if ROOT were '/'."""

    def __init__(self, root):
        self.root = _REAL_REALPATH(root)
        if not os.path.isdir(self.root):
            raise OracleError(f"root {root!r} is not a directory")

    def real(self, host_path):
        """ROOT-joined path of a normalised absolute host path (no symlinks resolved)."""
        return self.root + host_path if host_path != "/" else self.root

    @staticmethod
    def _parts(path):
        return [p for p in path.split("/") if p and p != "."]

    def resolve(self, path, strict, follow_last=True):
        """Host path that `path` resolves to (chroot semantics).

        With strict, returns None when a component does not exist (as exists() would see it).
        Without strict, behaves as realpath(): resolves what exists and appends the rest.
        """
        if not path.startswith("/"):
            raise OracleError(f"relative path {path!r} given to the chroot filesystem")
        pending = self._parts(path)
        done = []
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = done + [name]
            real = self.real("/" + "/".join(candidate))
            is_last = not pending
            try:
                st = _REAL_LSTAT(real)
            except FileNotFoundError:
                if strict:
                    return None
                done = candidate
                continue
            except NotADirectoryError:
                if strict:
                    return None
                done = candidate
                continue
            if stat_mod.S_ISLNK(st.st_mode) and (follow_last or not is_last):
                hops += 1
                if hops > MAX_LINKS:
                    if strict:
                        return None
                    raise OracleError(f"too many symlinks resolving {path!r}")
                target = _REAL_READLINK(real)
                if target.startswith("/"):
                    done = []
                pending = self._parts(target) + pending
                continue
            if not is_last and not stat_mod.S_ISDIR(st.st_mode) and strict:
                return None
            done = candidate
        return "/" + "/".join(done)

    def to_host(self, real_path):
        """Host path of a path under ROOT (or None if outside)."""
        if real_path == self.root:
            return "/"
        if real_path.startswith(self.root + "/"):
            return real_path[len(self.root):]
        return None


class Redirect:
    """Context manager that redirects os-brick's filesystem functions into a ChrootFs."""

    def __init__(self, fs, trace):
        self.fs = fs
        self.trace = trace
        self.saved = {}
        self.patches = []

    def _log(self, fn, arg, res):
        if self.trace:
            print(f"oracle: {fn}({arg!r}) -> {res!r}", file=sys.stderr)

    def __enter__(self):
        fs = self.fs
        o_lstat, o_stat = _REAL_LSTAT, _REAL_STAT
        o_listdir, o_readlink = _REAL_LISTDIR, _REAL_READLINK
        o_open = _REAL_OPEN

        def is_abs(p):
            return isinstance(p, str) and p.startswith("/")

        def exists(p):
            if not is_abs(p):
                raise OracleError(f"os.path.exists on non-absolute {p!r}")
            res = fs.resolve(p, strict=True) is not None
            self._log("exists", p, res)
            return res

        def realpath(p, *args, **kwargs):
            if not is_abs(p):
                raise OracleError(f"os.path.realpath on non-absolute {p!r}")
            res = fs.resolve(p, strict=False)
            self._log("realpath", p, res)
            return res

        def islink(p):
            parent, name = os.path.split(p.rstrip("/") or "/")
            rp = fs.resolve(parent, strict=True)
            res = False
            if rp is not None and name:
                try:
                    res = stat_mod.S_ISLNK(o_lstat(fs.real(os.path.join(rp, name))).st_mode)
                except OSError:
                    res = False
            self._log("islink", p, res)
            return res

        def isdir(p):
            rp = fs.resolve(p, strict=True) if is_abs(p) else None
            res = False
            if rp is not None:
                try:
                    res = stat_mod.S_ISDIR(o_stat(fs.real(rp)).st_mode)
                except OSError:
                    res = False
            self._log("isdir", p, res)
            return res

        def listdir(p="."):
            if not is_abs(p):
                raise OracleError(f"os.listdir on non-absolute {p!r}")
            rp = fs.resolve(p, strict=True)
            if rp is None:
                raise FileNotFoundError(2, "No such file or directory", p)
            res = o_listdir(fs.real(rp))
            self._log("listdir", p, res)
            return res

        def readlink(p, *args, **kwargs):
            if not is_abs(p):
                raise OracleError(f"os.readlink on non-absolute {p!r}")
            parent, name = os.path.split(p.rstrip("/"))
            rp = fs.resolve(parent, strict=True)
            if rp is None:
                raise FileNotFoundError(2, "No such file or directory", p)
            res = o_readlink(fs.real(os.path.join(rp, name)))
            self._log("readlink", p, res)
            return res

        def glob(pattern, *args, **kwargs):
            if not is_abs(pattern):
                raise OracleError(f"glob.glob on non-absolute {pattern!r}")
            # glob itself calls os.path.isdir/lexists on the rooted names: run it unredirected.
            self._restore()
            try:
                found = _REAL_GLOB(glob_mod.escape(fs.root) + pattern, *args, **kwargs)
            finally:
                self._apply()
            res = []
            for f in found:
                host = fs.to_host(f)
                # Anything that only matched through a link leading out of the root is not
                # part of the simulated host.
                if host is not None and fs.resolve(host, strict=True) is not None:
                    res.append(host)
            self._log("glob", pattern, res)
            return res

        def open_(file, mode="r", *args, **kwargs):
            if isinstance(file, int) or not is_abs(file):
                raise OracleError(f"open() on non-absolute {file!r}")
            if any(c in mode for c in "wax+"):
                raise OracleError(f"os-brick tried to write {file!r} (mode {mode!r})")
            rp = fs.resolve(file, strict=True)
            self._log("open", file, rp)
            if rp is None:
                raise FileNotFoundError(2, "No such file or directory", file)
            return o_open(fs.real(rp), mode, *args, **kwargs)

        patches = [
            (os.path, "exists", exists),
            (os.path, "realpath", realpath),
            (os.path, "islink", islink),
            (os.path, "isdir", isdir),
            (os, "listdir", listdir),
            (os, "readlink", readlink),
            (glob_mod, "glob", glob),
            (builtins, "open", open_),
        ]
        self.patches = patches
        for mod, name, _fn in patches:
            self.saved[(mod, name)] = getattr(mod, name)
        self._apply()
        return self

    def _apply(self):
        for mod, name, fn in self.patches:
            setattr(mod, name, fn)

    def _restore(self):
        for (mod, name), fn in self.saved.items():
            setattr(mod, name, fn)

    def __exit__(self, *exc):
        self._restore()
        self.saved.clear()
        return False


def make_execute(commands, trace):
    """An os-brick `execute` that answers from canned outputs (processutils semantics)."""

    def execute(*cmd, **kwargs):
        argv = [str(c) for c in cmd]
        for entry in commands:
            if list(entry.get("argv", [])) == argv:
                break
        else:
            # Remembered as well as raised: os-brick may swallow the exception.
            execute.unknown.append(argv)
            raise OracleError(
                "os-brick ran a command with no canned output: "
                + " ".join(argv)
                + " (capture it from the simulator and add it to the commands file)"
            )
        status = int(entry.get("status", 0))
        out, err = entry.get("stdout", ""), entry.get("stderr", "")
        if trace:
            print(f"oracle: exec {argv} -> {status}", file=sys.stderr)
        check = kwargs.get("check_exit_code", True)
        if isinstance(check, bool):
            allowed = [0] if check else None
        elif isinstance(check, int):
            allowed = [check]
        else:
            allowed = list(check)
        if allowed is not None and status not in allowed:
            raise processutils.ProcessExecutionError(
                exit_code=status, stdout=out, stderr=err, cmd=" ".join(argv)
            )
        return out, err

    execute.unknown = []
    return execute


def unwrap(props):
    if isinstance(props, dict) and "data" in props and "driver_volume_type" in props:
        return props["data"]
    return props


def run_job(root, protocol, props, multipath, commands, trace=False):
    """os-brick's get_volume_paths for `props` on the host under `root`: sorted host paths.

    `protocol` None means: the wrapper's driver_volume_type."""
    fs = ChrootFs(root)
    if protocol is None:
        protocol = props.get("driver_volume_type") if isinstance(props, dict) else None
        if not isinstance(protocol, str):
            raise OracleError("no --protocol and no driver_volume_type in the properties")
    props = copy.deepcopy(unwrap(props))
    if not isinstance(props, dict):
        raise OracleError("connection properties must be a JSON object")
    execute = make_execute(commands, trace)
    proto = protocol.lower()
    with Redirect(fs, trace):
        if proto == "iscsi":
            conn = osb_connector.InitiatorConnector.factory(
                "ISCSI", None, use_multipath=multipath, execute=execute
            )
            paths = conn.get_volume_paths(props)
        elif proto in ("fc", "fibre_channel"):
            conn = osb_connector.InitiatorConnector.factory(
                "FIBRE_CHANNEL", None, use_multipath=multipath, execute=execute
            )
            props = conn._add_targets_to_connection_properties(props)
            paths = conn.get_volume_paths(props)
        elif proto in ("nvmeof", "nvme", "nvme-of"):
            # A class-level cache; each job may be a different host.
            osb_nvmeof.NVMeOFConnector.native_multipath_supported = None
            conn = osb_connector.InitiatorConnector.factory(
                "NVME", None, use_multipath=multipath, execute=execute
            )
            conn_props = osb_nvmeof.NVMeOFConnProps(props, find_controllers=True)
            paths = conn.get_volume_paths(conn_props)
        else:
            raise OracleError(f"unknown protocol {protocol!r} (iscsi, fc, nvmeof)")
    if execute.unknown:
        raise OracleError(
            "os-brick ran commands with no canned output: "
            + "; ".join(" ".join(a) for a in execute.unknown)
        )
    return sorted(set(paths))


def _no_hostnqn_creation(*args, **kwargs):
    # os-brick creates /etc/nvme/hostnqn through privsep when it is missing; the oracle never
    # writes. A tree without the file behaves as a host whose hostnqn cannot be created.
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root")
    ap.add_argument(
        "--protocol", help="iscsi, fc or nvmeof; default: the props' driver_volume_type"
    )
    ap.add_argument("--props")
    ap.add_argument("--multipath", action="store_true")
    ap.add_argument("--commands")
    ap.add_argument("--batch")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--trace", action="store_true", help="log every redirected call to stderr")
    ap.add_argument("--version", action="store_true", help="print os-brick's version")
    args = ap.parse_args(argv)

    priv_nvme.create_hostnqn = _no_hostnqn_creation
    # os-brick warns on ordinary answers ("No active sessions"); only errors unless tracing.
    logging.getLogger("os_brick").setLevel(logging.DEBUG if args.trace else logging.ERROR)

    if args.version:
        from importlib import metadata

        print(metadata.version("os-brick"))
        return 0

    def load(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            print(f"cannot read {path}: {exc}", file=sys.stderr)
            sys.exit(2)

    def run_batch(jobs):
        results = []
        for job in jobs:
            try:
                paths = run_job(
                    job["root"],
                    job.get("protocol"),
                    job["props"],
                    bool(job.get("multipath", False)),
                    job.get("commands", []),
                    args.trace,
                )
                results.append({"paths": paths})
            except Exception as exc:  # reported per job, the batch goes on
                results.append({"error": f"{type(exc).__name__}: {exc}"})
        return results

    if args.batch:
        print(json.dumps(run_batch(load(args.batch))))
        return 0

    if args.serve:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                jobs = json.loads(line)
                if not isinstance(jobs, list):
                    raise ValueError("a line must be a JSON list of jobs")
                out = run_batch(jobs)
            except ValueError as exc:
                out = {"error": f"bad request: {exc}"}
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        return 0

    if not args.root or not args.props:
        ap.error("--root and --props are required (or --batch)")
    props = load(args.props)
    commands = load(args.commands) if args.commands else []
    try:
        paths = run_job(args.root, args.protocol, props, args.multipath, commands, args.trace)
    except Exception as exc:
        print(f"os-brick failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
