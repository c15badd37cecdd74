#!/usr/bin/python3
"""Runs a command under the sandbox a systemd unit describes, without systemd.

    unshare --mount -- sandbox_exec.py --unit deploy/xmppd.service --binary target/xmppd \
        --state DIR --config-dir DIR -- --config /etc/xmppd/xmppd.toml serve

Must start as root in a mount namespace of its own (unshare --mount). It reads the unit's
[Service] section and applies what it says, as systemd.exec(5) describes:
  - StateDirectory= / ConfigurationDirectory=: --state and --config-dir bound on
    /var/lib/NAME and /etc/NAME; the binary installed at ExecStart's path (a tmpfs over its
    directory);
  - ProtectSystem=strict: every mount read-only but /proc, /sys and /dev (handled below),
    then ReadWritePaths= and the state directory writable again;
  - ProtectHome=true: empty read-only tmpfs on /home, /root, /run/user;
  - PrivateTmp=true: fresh tmpfs on /tmp and /var/tmp;
  - PrivateDevices=true: a /dev holding only null, zero, full, random, urandom;
  - ProtectKernelTunables=true / ProtectControlGroups=true: /proc/sys and /sys read-only;
  - User= / Group=: the process runs as that user, with no supplementary groups; UMask=;
  - NoNewPrivileges=true, CapabilityBoundingSet= (empty): no_new_privs, the bounding set
    emptied;
  - SystemCallFilter=, SystemCallErrorNumber=, SystemCallArchitectures=native: a seccomp
    allow-list built from systemd's own syscall groups (systemd-analyze syscall-filter),
    minus the ~ lists, failing others with the errno;
  - MemoryDenyWriteExecute=true: mmap with PROT_WRITE|PROT_EXEC and mprotect/pkey_mprotect
    adding PROT_EXEC fail with EPERM (seccomp, as systemd does it);
  - RestrictAddressFamilies=: socket() of any other family fails with EAFNOSUPPORT.
Settings it cannot reproduce here are listed on stderr as "not emulated"; an unknown one is an
error, so the unit cannot gain a setting this check silently ignores.
"""

import argparse
import ctypes
import errno
import os
import pwd
import grp
import shutil
import socket
import subprocess
import sys

import seccomp

EMULATED = {
    "StateDirectory", "ConfigurationDirectory", "ProtectSystem", "ReadWritePaths",
    "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
    "ProtectControlGroups", "User", "Group", "UMask", "NoNewPrivileges",
    "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallFilter",
    "SystemCallErrorNumber", "SystemCallArchitectures", "MemoryDenyWriteExecute",
    "RestrictAddressFamilies", "ExecStart",
}
# Enforced by systemd only (namespaces, cgroups, kernel interfaces a test machine may not
# offer); their syntax is checked by systemd-analyze verify and their effect scored by
# systemd-analyze security.
NOT_EMULATED = {
    "PrivateUsers", "ProtectHostname", "ProtectClock", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectProc", "ProcSubset", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "LockPersonality", "RemoveIPC", "DevicePolicy", "KeyringMode",
    "PrivateMounts", "IPAddressDeny", "IPAddressAllow",
}
NOT_SANDBOX = {
    "Type", "NotifyAccess", "WatchdogSec", "TimeoutStartSec", "TimeoutStopSec",
    "ExecStartPre", "ExecReload", "KillSignal", "Restart", "RestartSec", "LimitNOFILE",
    "StateDirectoryMode", "ConfigurationDirectoryMode",
}

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PROT_WRITE = 0x2
PROT_EXEC = 0x4


def die(message):
    print(f"sandbox_exec: {message}", file=sys.stderr)
    sys.exit(2)


def read_service(path):
    """The [Service] section: key -> list of values (repeated keys accumulate)."""
    settings, section = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section != "Service" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def last(settings, key, default=None):
    values = settings.get(key)
    return values[-1] if values else default


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def mount_points():
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def build_filesystem(settings, args):
    mount("--make-rprivate", "/")
    name = last(settings, "StateDirectory")
    state = f"/var/lib/{name}"
    conf = f"/etc/{last(settings, 'ConfigurationDirectory')}"
    for target in (state, conf):
        if not os.path.isdir(target):
            die(f"{target} must exist on the host to be bound over")
    mount("--bind", args.state, state)
    mount("--bind", args.config_dir, conf)

    # The binary at ExecStart's path, as an install would put it.
    exec_path = last(settings, "ExecStart").split()[0]
    exec_dir = os.path.dirname(exec_path)
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", exec_dir)
    shutil.copy2(args.binary, exec_path)
    os.chmod(exec_path, 0o755)

    if last(settings, "PrivateDevices") == "true":
        # The host's /dev kept aside on a scratch tmpfs, a new /dev, and the five pseudo
        # devices bound from the old one over empty files.
        mount("-t", "tmpfs", "tmpfs", "/mnt")
        os.mkdir("/mnt/host-dev")
        mount("--rbind", "/dev", "/mnt/host-dev")
        mount("-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", "/dev")
        for dev in ("null", "zero", "full", "random", "urandom"):
            open(f"/dev/{dev}", "w").close()
            mount("--bind", f"/mnt/host-dev/{dev}", f"/dev/{dev}")
        mount("--make-rprivate", "/mnt")
        subprocess.run(["umount", "-R", "-l", "/mnt"], check=True)
    if last(settings, "ProtectSystem") == "strict":
        for mp in mount_points():
            if mp.startswith(("/proc", "/sys", "/dev")):
                continue
            subprocess.run(["mount", "-o", "remount,bind,ro", mp], check=False,
                           stderr=subprocess.DEVNULL)
        for rw in [state, *" ".join(settings.get("ReadWritePaths", [])).split()]:
            mount("-o", "remount,bind,rw", rw)
    if last(settings, "ProtectKernelTunables") == "true":
        mount("--bind", "/proc/sys", "/proc/sys")
        mount("-o", "remount,bind,ro", "/proc/sys")
    if "true" in (last(settings, "ProtectKernelTunables"), last(settings, "ProtectControlGroups")):
        mount("--bind", "/sys", "/sys")
        mount("-o", "remount,bind,ro", "/sys")
    if last(settings, "ProtectHome") == "true":
        for home in ("/home", "/root", "/run/user"):
            if os.path.isdir(home):
                mount("-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", home)
    if last(settings, "PrivateTmp") == "true":
        for tmp in ("/tmp", "/var/tmp"):
            mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", tmp)
    return exec_path, state


def expand_syscalls(groups):
    """The syscall names of systemd's groups (@name, recursively) and plain names."""
    names, seen = set(), set()
    pending = list(groups)
    while pending:
        item = pending.pop()
        if not item.startswith("@"):
            names.add(item)
            continue
        if item in seen:
            continue
        seen.add(item)
        out = subprocess.run(["systemd-analyze", "syscall-filter", item], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#"):
                pending.append(word)
    return names


def syscall_filter(settings):
    """systemd's SystemCallFilter= semantics: allow lists add up, ~ lists remove."""
    allowed = set()
    for value in settings.get("SystemCallFilter", []):
        words = value.split()
        if words and words[0].startswith("~"):
            words[0] = words[0][1:]
            allowed -= expand_syscalls(words)
        else:
            allowed |= expand_syscalls(words)
    return allowed


def drop_privileges(settings):
    libc = ctypes.CDLL(None, use_errno=True)
    user = last(settings, "User")
    group = last(settings, "Group", user)
    uid = pwd.getpwnam(user).pw_uid
    gid = grp.getgrnam(group).gr_gid
    if last(settings, "CapabilityBoundingSet", None) == "":
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            cap_last = int(f.read())
        for cap in range(cap_last + 1):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                die(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if last(settings, "NoNewPrivileges") == "true":
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            die("cannot set no_new_privs")
    umask = last(settings, "UMask")
    if umask:
        os.umask(int(umask, 8))
    return uid


def load_seccomp(settings):
    """The unit's seccomp filters. libseccomp sets no_new_privs when it loads a filter, as
    systemd implies NoNewPrivileges= for a service with a system call filter."""
    errno_name = last(settings, "SystemCallErrorNumber", "EPERM")
    refuse = seccomp.ERRNO(getattr(errno, errno_name))
    if last(settings, "MemoryDenyWriteExecute") == "true":
        wx = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        eperm = seccomp.ERRNO(errno.EPERM)
        both = PROT_WRITE | PROT_EXEC
        wx.add_rule(eperm, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, both, both))
        wx.add_rule(eperm, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        wx.add_rule(eperm, "pkey_mprotect",
                    seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        wx.load()
    families = " ".join(settings.get("RestrictAddressFamilies", [])).split()
    if families:
        keep = {getattr(socket, f) for f in families}
        af = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        nosupport = seccomp.ERRNO(errno.EAFNOSUPPORT)
        top = max(keep)
        for family in range(top):
            if family not in keep:
                af.add_rule(nosupport, "socket", seccomp.Arg(0, seccomp.EQ, family))
        af.add_rule(nosupport, "socket", seccomp.Arg(0, seccomp.GT, top))
        af.load()

    # The allow-list last: once it is loaded, seccomp() itself (@privileged) is refused.
    allowed = syscall_filter(settings)
    if allowed:
        allow_list = seccomp.SyscallFilter(defaction=refuse)
        for name in sorted(allowed):
            try:
                allow_list.add_rule(seccomp.ALLOW, name)
            except (RuntimeError, ValueError, OSError):
                pass  # a name this kernel or libseccomp does not know
        allow_list.load()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if os.geteuid() != 0:
        die("must start as root (it mounts, then drops to the unit's User=)")

    settings = read_service(args.unit)
    unknown = set(settings) - EMULATED - NOT_EMULATED - NOT_SANDBOX
    if unknown:
        die(f"the unit has settings this check does not know: {sorted(unknown)}")
    missing = sorted(set(settings) & NOT_EMULATED)
    print(f"sandbox_exec: not emulated (systemd only): {' '.join(missing)}", file=sys.stderr)

    exec_path, state = build_filesystem(settings, args)
    home = pwd.getpwnam(last(settings, "User")).pw_dir
    drop_privileges(settings)
    load_seccomp(settings)
    os.chdir(state)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    for passed in ("RUST_LOG", "NOTIFY_SOCKET"):
        if passed in os.environ:
            env[passed] = os.environ[passed]
    os.execve(exec_path, [exec_path, *argv], env)


if __name__ == "__main__":
    main()
