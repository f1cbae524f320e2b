/**
 * The program that runs as PID 1 of every sandbox (root, inside the new PID, mount, network, IPC and UTS
 * namespaces `unshare` made), as Python source for Debian's python3. It builds the root, joins the
 * cgroups, forks the child that drops to the unprivileged user (rlimits, chroot, no capabilities,
 * no_new_privs, a seccomp filter that denies the keyring syscalls), checks inside the child that all of
 * it took effect, and from the moment the program arrives on stdin (which the child reads itself) enforces
 * the wall-clock limit itself. When the program has exited it tags the end of stdout and stderr and
 * reports the exit status on fd 3, so the host can answer before the namespaces are torn down. It does
 * not decide limits (sandbox.ts passes them) and trusts nothing the child says.
 */

/** Exit code and stderr marker of a refusal (the program was not run). */
export const REFUSED_EXIT = 97
export const REFUSED_MARKER = "arpo-sandbox-refused:"
/** Exit code and stderr marker of the in-sandbox wall-clock limit. */
export const TIMEOUT_EXIT = 124
export const TIMEOUT_MARKER = "arpo-sandbox-timeout"
/** Written by PID 1 to stdout and stderr (`\0` + this + the run's tag + `\n`) after the program exited. */
export const END_TAG = "arpo-sandbox-end:"
/** Written by the child to stderr once it is set up and about to run (or wait for) the program. */
export const READY_MARKER = "arpo-sandbox-ready\n"

/**
 * Args: one JSON object (see `SupervisorSpec` in sandbox.ts). Run as `python3 -I -c SUPERVISOR JSON`.
 * Refusals exit 97 before any program code runs. A program `[python, "-I", "-c", code]` with this same
 * interpreter runs in the child's interpreter (no second start-up); any other program is exec'd.
 */
export const SUPERVISOR = String.raw`
import ctypes, errno, json, os, resource, select, signal, sys
import ast, traceback  # loaded before the fork so that Python programs run in-process start with them

_spec = json.loads(sys.argv[1])

def _refuse(msg):
    os.write(2, ("${REFUSED_MARKER} " + msg + "\n").encode())
    os._exit(${REFUSED_EXIT})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096

def _b(s):
    return None if s is None else s.encode()

def _mount(src, dst, fstype, flags, data=None):
    if _libc.mount(_b(src), _b(dst), _b(fstype), flags, _b(data)) != 0:
        _refuse("cannot mount %s on %s: %s" % (src, dst, os.strerror(ctypes.get_errno())))

def _bind(src, dst, ro, dev=False):
    _mount(src, dst, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if dev else MS_NODEV) | (MS_RDONLY if ro else 0)
    _mount(None, dst, None, flags)

# syscall numbers of add_key, request_key, keyctl per audit arch; x32 (bit 30) is denied whole
_ARCHES = {
    "x86_64": [(0xC000003E, (248, 249, 250), 0x40000000), (0x40000003, (286, 287, 288), None)],
    "aarch64": [(0xC00000B7, (217, 218, 219), None), (0x40000028, (309, 310, 311), None)],
}

def _seccomp_program(arches):
    LD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
    ALLOW, DENY, KILL = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x80000000
    prog, labels = [], {}
    for i, (arch, nrs, above) in enumerate(arches):
        labels["arch%d" % i] = len(prog)
        prog.append((LD, 0, 0, 4))
        prog.append((JEQ, 0, "arch%d" % (i + 1), arch))
        prog.append((LD, 0, 0, 0))
        if above is not None:
            prog.append((JGE, "deny", 0, above))
        for nr in nrs:
            prog.append((JEQ, "deny", 0, nr))
        prog.append((RET, 0, 0, ALLOW))
    labels["arch%d" % len(arches)] = len(prog)
    prog.append((RET, 0, 0, KILL))
    labels["deny"] = len(prog)
    prog.append((RET, 0, 0, DENY))
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out.append((code, jt, jf, k))
    return out

class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]

def _install_seccomp(arches):
    prog = _seccomp_program(arches)
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), arr)
    if _libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        _refuse("cannot install the seccomp filter: " + os.strerror(ctypes.get_errno()))

def _child():
    try:
        os.close(3)  # the status pipe is PID 1's alone
    except OSError:
        pass
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    lim = _spec["limits"]
    for res, v in ((resource.RLIMIT_NPROC, lim["nproc"]), (resource.RLIMIT_AS, lim["as"]),
                   (resource.RLIMIT_FSIZE, lim["fsize"]), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (v, v))
    # CPU: hard one second above soft, so the program gets SIGXCPU ("CPU time limit exceeded") at the limit;
    # with soft == hard Linux checks the hard limit first and sends SIGKILL, which reads as a memory kill
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu"], lim["cpu"] + 1))
    os.chroot(_spec["root"])
    os.chdir("/")
    cap = 0
    while _libc.prctl(24, cap, 0, 0, 0) == 0:  # PR_CAPBSET_DROP until EINVAL past the last capability
        cap += 1
    if ctypes.get_errno() != errno.EINVAL or cap < 30:
        _refuse("cannot empty the capability bounding set (stopped at %d)" % cap)
    os.setgroups([])
    os.setresgid(_spec["gid"], _spec["gid"], _spec["gid"])
    os.setresuid(_spec["uid"], _spec["uid"], _spec["uid"])
    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(hdr, data) != 0:
        _refuse("cannot clear the capabilities: " + os.strerror(ctypes.get_errno()))
    if _libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        _refuse("cannot set no_new_privs")
    arches = _ARCHES.get(os.uname().machine)
    if arches is None:
        _refuse("no seccomp filter for machine " + os.uname().machine)
    _install_seccomp(arches)
    # the in-child check: refuse unless every part of the isolation took effect
    if 0 in os.getresuid() or 0 in os.getresgid() or os.getgroups() not in ([], [_spec["gid"]]):
        _refuse("the program would run as root (uid %s, gid %s)" % (os.getresuid(), os.getresgid()))
    for host in _spec["hostNamespaces"]:
        kind = host.split(":")[0]
        try:
            mine = os.readlink("/proc/self/ns/" + kind)
        except OSError as e:
            _refuse("cannot read /proc/self/ns/%s: %s" % (kind, e))
        if mine == host:
            _refuse("the %s namespace is the host's (%s)" % (kind, host))
    nr = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
    if _libc.syscall(ctypes.c_long(nr), ctypes.c_long(0), ctypes.c_long(-3), ctypes.c_long(0)) != -1 or ctypes.get_errno() != errno.EPERM:
        _refuse("the keyring syscalls are not denied")
    for line in open("/proc/self/status"):
        if line.startswith(("CapEff:", "CapPrm:", "CapBnd:")) and int(line.split()[1], 16) != 0:
            _refuse("capabilities left: " + line.strip())
    try:
        os.chdir("/scratch")
    except OSError:
        _refuse("no scratch directory")
    os.environ.clear()
    os.environ.update(_spec["env"])

def _exit_status(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1

def _run_program():
    argv = _spec["argv"]
    os.write(2, b"${READY_MARKER.replace("\n", "\\n")}")
    if len(argv) == 4 and argv[0] == sys.executable and argv[1:3] == ["-I", "-c"]:
        # as python3 -I -c would, in this interpreter; then exit without the slow interpreter teardown
        import types
        main = types.ModuleType("__main__")
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
        sys.argv = ["-c"]
        code = compile(argv[3], "<string>", "exec")
        del argv
        try:
            exec(code, main.__dict__)
            status = 0
        except SystemExit as e:
            status = _exit_status(e)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            status = 1
        try:
            if "threading" in sys.modules:
                sys.modules["threading"]._shutdown()
            import atexit
            atexit._run_exitfuncs()
        except BaseException:
            pass
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                status = status or 120
        os._exit(status)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        os.execv(argv[0], argv)
    except OSError as e:
        os.write(2, ("cannot run %s: %s\n" % (argv[0], e)).encode())
        os._exit(127)

def _main():
    if os.getpid() != 1:
        _refuse("not PID 1 of a new PID namespace (pid %d)" % os.getpid())
    if os.getuid() != 0:
        _refuse("the supervisor must start as root to build the sandbox")
    R = _spec["root"]
    _mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=0755" % _spec["tmpfsBytes"])
    for d in ("usr", "etc"):
        os.mkdir(R + "/" + d)
        _bind("/" + d, R + "/" + d, True)
    for d in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink("/" + d):
            os.symlink(os.readlink("/" + d), R + "/" + d)
        elif os.path.isdir("/" + d):
            os.mkdir(R + "/" + d)
            _bind("/" + d, R + "/" + d, True)
    for d in ("dev", "proc", "scratch", "tmp"):
        os.mkdir(R + "/" + d)
    for n in ("null", "zero", "random", "urandom"):
        open(R + "/dev/" + n, "w").close()
        _bind("/dev/" + n, R + "/dev/" + n, False, dev=True)
    _mount("proc", R + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for p in ("keys", "key-users"):  # the keyring is global: hide its listing too
        if os.path.exists(R + "/proc/" + p):
            _bind("/dev/null", R + "/proc/" + p, True, dev=True)
    os.chown(R + "/scratch", _spec["uid"], _spec["gid"])
    os.chmod(R + "/scratch", 0o700)
    os.chmod(R + "/tmp", 0o1777)
    os.chmod(R, 0o555)
    for g in _spec["cgroups"]:
        try:
            with open(g + "/cgroup.procs", "w") as f:
                f.write("1")
        except OSError as e:
            _refuse("cannot join cgroup %s: %s" % (g, e))
    name = b"sandbox"
    if _libc.sethostname(name, len(name)) != 0:
        _refuse("cannot set the host name in the new UTS namespace")
    pid = os.fork()
    if pid == 0:
        try:
            _child()
        except Exception as e:
            _refuse("setting up the child failed: %r" % (e,))
        _run_program()  # never returns: exits or execs
    # the child reads its program from our stdin itself; the wall clock starts when the program arrives
    # (or when the child ended without one); the status pipe (fd 3) carries the end tag, read after the fork
    try:
        end = b"\0${END_TAG}" + os.read(3, 64).strip() + b"\n"
    except OSError:
        end = None  # run by hand, without a status pipe: the host waits for the exit
    pidfd = os.pidfd_open(pid)
    waiting = select.poll()
    waiting.register(0, select.POLLIN | select.POLLHUP)
    waiting.register(pidfd, select.POLLIN)
    while not waiting.poll():
        pass
    def _expire(signum, frame):
        os.write(2, b"\n${TIMEOUT_MARKER}\n")
        os._exit(${TIMEOUT_EXIT})  # PID 1 exiting kills every process of the namespace
    signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, _spec["timeoutMs"] / 1000.0)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            # everything the program wrote is in the pipes before these: the host may answer now,
            # without waiting for this namespace to be torn down
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            for fd in (1, 2, 3):
                try:
                    if end is not None:
                        os.write(fd, end if fd != 3 else b"%d\n" % code)
                except OSError:
                    pass
            os._exit(code)

_main()
`
