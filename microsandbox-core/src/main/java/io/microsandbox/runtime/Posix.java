package io.microsandbox.runtime;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Objects;

/**
 * POSIX process, signal and terminal calls the JDK does not offer, implemented by the JNI
 * library {@code libmsbjni.so} that the core jar carries.
 *
 * <p>The library is extracted with {@link RuntimeFiles#extract(Path, String)} under the
 * {@link RuntimeFiles#nativeHome()} and loaded on first
 * use of a native method (thread-safe, once). Loading failures surface as
 * {@link UnsatisfiedLinkError}s that say why. Failing system calls throw {@link IOException}s
 * naming what was attempted and the {@code errno} text.
 *
 * <p>Strings (arguments, environment, paths) are passed to the system as UTF-8 and must not
 * contain NUL characters.
 */
public final class Posix {

    /** Hangup. */
    public static final int SIGHUP = 1;
    /** Interrupt (Ctrl-C). */
    public static final int SIGINT = 2;
    /** Kill; cannot be caught or ignored. */
    public static final int SIGKILL = 9;
    /** User-defined signal 1. */
    public static final int SIGUSR1 = 10;
    /** Polite termination request. */
    public static final int SIGTERM = 15;
    /** Continue a stopped process. */
    public static final int SIGCONT = 18;
    /** Stop; cannot be caught or ignored. */
    public static final int SIGSTOP = 19;
    /** The descriptor number a child of {@link #spawn(String[], String[], String, String, int, boolean, int)} finds the passed one at. */
    public static final int PASSED_FD = 3;

    /** File name of the JNI library inside the jar's native folder. */
    public static final String LIBRARY = "libmsbjni.so";

    private static final Object LOAD_LOCK = new Object();
    private static volatile boolean loaded;
    private static Throwable loadFailure; // guarded by LOAD_LOCK

    private Posix() {
    }

    // ------------------------------------------------------------------------------------
    // loading

    /**
     * Loads the JNI library unless already loaded. Called by every native entry point; may be
     * called early to fail fast.
     *
     * @throws UnsatisfiedLinkError if the library cannot be extracted or loaded (the first
     *     failure is remembered and reported again, as the cause, on later calls)
     */
    public static void load() {
        if (loaded) {
            return;
        }
        synchronized (LOAD_LOCK) {
            if (loaded) {
                return;
            }
            if (loadFailure == null) {
                Path lib = null;
                try {
                    lib = RuntimeFiles.extract(RuntimeFiles.nativeHome(), LIBRARY);
                    System.load(lib.toString());
                    loaded = true;
                    return;
                } catch (RuntimeException | UnsatisfiedLinkError e) {
                    loadFailure = e;
                    throw linkError(lib, e);
                }
            }
            throw linkError(null, loadFailure);
        }
    }

    private static UnsatisfiedLinkError linkError(Path lib, Throwable cause) {
        String where = lib != null ? " from " + lib : "";
        UnsatisfiedLinkError e = new UnsatisfiedLinkError("cannot load the microsandbox JNI library " + LIBRARY
                + where + ": " + cause.getMessage());
        e.initCause(cause);
        return e;
    }

    // ------------------------------------------------------------------------------------
    // processes

    /**
     * Starts a program in a new child process (clone/vfork + {@code execvpe}).
     *
     * <p>In the child: a new session if {@code newSession}; the parent-death signal if
     * requested (and an immediate exit if the parent already died before it took effect);
     * stdin from {@code /dev/null}; stdout and stderr appended to {@code outputPath}; every
     * other file descriptor closed; all signal dispositions default and the signal mask empty.
     * {@code argv[0]} without a slash is searched on the JVM's {@code PATH} (not the
     * {@code env} given here), as {@code execvpe} does; a file without {@code #!} is run by
     * {@code /bin/sh}.
     *
     * <p><b>Parent-death signal caveat:</b> Linux delivers it when the <em>thread</em> that
     * created the child exits, not when the JVM exits. Call this from a thread that lives at
     * least as long as the child should (a dedicated long-lived thread, not a pooled or
     * short-lived one), or the child is signalled as soon as that thread ends.
     *
     * <p>The child must be reaped with {@link #waitPid(int)}; the JDK does not reap it.
     *
     * @param argv program and arguments; at least one element, {@code argv[0]} non-empty
     * @param env environment as {@code NAME=value} strings, or {@code null} to inherit the JVM's
     * @param workDir working directory, or {@code null} to inherit the JVM's
     * @param outputPath file that receives stdout and stderr (appended; created with mode
     *     0600), or {@code null} for {@code /dev/null}
     * @param parentDeathSignal signal the child gets when the spawning thread dies, 0 for none
     * @param newSession whether the child calls {@code setsid()} (own session and process
     *     group, no controlling terminal)
     * @param passFd a descriptor the child gets as its fd {@value #PASSED_FD} (every other
     *     descriptor above 2 is closed), or -1 for none
     * @return the child's pid
     * @throws IOException {@code "cannot run <argv0>: <reason>"} if the output file cannot be
     *     opened, {@code passFd} cannot be duplicated, the working directory cannot be entered,
     *     or the program cannot be executed;
     *     no child is left behind
     */
    public static int spawn(String[] argv, String[] env, String workDir, String outputPath,
            int parentDeathSignal, boolean newSession, int passFd) throws IOException {
        Objects.requireNonNull(argv, "argv");
        if (argv.length == 0 || argv[0] == null || argv[0].isEmpty()) {
            throw new IllegalArgumentException("argv must start with a program name");
        }
        if (parentDeathSignal < 0 || parentDeathSignal > 64) {
            throw new IllegalArgumentException("bad signal number " + parentDeathSignal);
        }
        byte[][] cargv = cstrings(argv, "argv");
        byte[][] cenv = env == null ? null : cstrings(env, "env");
        byte[] cdir = workDir == null ? null : cstring(workDir, "workDir");
        byte[] cout = outputPath == null ? null : cstring(outputPath, "outputPath");
        load();
        return spawn0(cargv, cenv, cdir, cout, parentDeathSignal, newSession, passFd);
    }

    /** {@link #spawn(String[], String[], String, String, int, boolean, int)} passing no descriptor. */
    public static int spawn(String[] argv, String[] env, String workDir, String outputPath,
            int parentDeathSignal, boolean newSession) throws IOException {
        return spawn(argv, env, workDir, outputPath, parentDeathSignal, newSession, -1);
    }

    /**
     * A new memfd of {@code size} bytes, all of them holes until written, closed on exec (pass
     * it to a child with {@link #spawn(String[], String[], String, String, int, boolean, int)});
     * open it again as {@code /proc/self/fd/<fd>}, close it with {@link #close(int)}.
     *
     * @param name what {@code /proc/<pid>/fd} shows it as ({@code /memfd:<name>})
     * @throws IOException if the kernel refuses it
     */
    public static int memfdCreate(String name, long size) throws IOException {
        if (size < 0) {
            throw new IllegalArgumentException("negative size " + size);
        }
        byte[] cname = cstring(name, "name");
        load();
        return memfdCreate0(cname, size);
    }

    /**
     * Waits for a child process to end and reaps it ({@code waitpid}, retried on EINTR).
     * Blocks the calling thread. Decode the result with {@link #exited(int)},
     * {@link #exitCode(int)} and {@link #termSignal(int)}.
     *
     * @param pid a child of this JVM
     * @return the raw wait status
     * @throws IOException if {@code pid} is not a child of this process (ECHILD), among others
     */
    public static int waitPid(int pid) throws IOException {
        load();
        return waitPid0(pid);
    }

    /**
     * Whether a wait status says the process exited normally ({@code WIFEXITED}).
     *
     * @param status raw wait status from {@link #waitPid(int)}
     * @return true for a normal exit
     */
    public static boolean exited(int status) {
        return (status & 0x7f) == 0;
    }

    /**
     * The exit code of a normally exited process ({@code WEXITSTATUS}).
     *
     * @param status raw wait status from {@link #waitPid(int)}
     * @return the exit code 0..255, or -1 if the process did not exit normally
     */
    public static int exitCode(int status) {
        return exited(status) ? (status >> 8) & 0xff : -1;
    }

    /**
     * The signal that killed a process ({@code WTERMSIG} when {@code WIFSIGNALED}).
     *
     * @param status raw wait status from {@link #waitPid(int)}
     * @return the signal number, or 0 if the process was not killed by a signal
     */
    public static int termSignal(int status) {
        int sig = status & 0x7f;
        return sig != 0 && sig != 0x7f ? sig : 0;
    }

    /**
     * Sends a signal ({@code kill(2)}). A negative pid signals a process group.
     *
     * @param pid target process (or {@code -pgid})
     * @param signal signal number, e.g. {@link #SIGTERM}; 0 only checks existence
     * @return true if sent (a zombie not yet reaped counts as existing), false if no such
     *     process (ESRCH)
     * @throws IOException on other failures, e.g. EPERM
     */
    public static boolean kill(int pid, int signal) throws IOException {
        load();
        return kill0(pid, signal);
    }

    /**
     * Makes the calling process (the JVM) a session leader ({@code setsid(2)}). If it is
     * already a process group leader (EPERM), returns its current session id instead.
     *
     * @return the session id
     * @throws IOException on other failures
     */
    public static int setsid() throws IOException {
        load();
        return setsid0();
    }

    /**
     * Asks the kernel to send {@code signal} to the calling process when its parent dies
     * ({@code prctl(PR_SET_PDEATHSIG)}). As with {@link #spawn}, "parent" means the thread
     * that created this process; 0 clears it.
     *
     * @param signal signal number, 0 to clear
     * @throws IOException if prctl fails
     */
    public static void setParentDeathSignal(int signal) throws IOException {
        load();
        setParentDeathSignal0(signal);
    }

    /**
     * Sets the file mode creation mask of the calling process ({@code umask(2)}): of the whole
     * JVM, every thread, and every child started afterwards (QEMU's logs and sockets too).
     * A library must not change it in a JVM it does not own; the supervisor sets
     * {@code 077} in its own.
     *
     * @param mask permission bits to withhold from new files, {@code 0} to {@code 0777}
     * @return the previous mask
     */
    public static int umask(int mask) {
        if ((mask & ~0777) != 0) {
            throw new IllegalArgumentException("umask takes permission bits 0 to 0777, got 0" + Integer.toOctalString(mask));
        }
        load();
        return umask0(mask);
    }

    /**
     * Opens a pidfd for a process ({@code pidfd_open(2)}, Linux 5.3+), close-on-exec. The fd
     * stays valid, and refers to the same process, even after the pid is reused. Close it
     * with {@link #close(int)}.
     *
     * @param pid the process
     * @return the file descriptor, or -1 if no such process (ESRCH)
     * @throws IOException on other failures (e.g. ENOSYS on old kernels)
     */
    public static int pidfdOpen(int pid) throws IOException {
        load();
        return pidfdOpen0(pid);
    }

    /**
     * Sends a signal to the process behind a pidfd ({@code pidfd_send_signal(2)}): unlike
     * {@link #kill(int, int)} it cannot reach another process that reused the pid.
     *
     * @return true if sent, false if the process has already exited
     * @throws IOException if the fd is invalid or the signal cannot be sent
     */
    public static boolean pidfdSignal(int pidfd, int signal) throws IOException {
        load();
        return pidfdSignal0(pidfd, signal);
    }

    /**
     * Waits until the process behind a pidfd has exited (the pidfd polls readable), without
     * reaping it.
     *
     * @param pidfd from {@link #pidfdOpen(int)}
     * @param timeoutMillis how long to wait; negative waits forever, 0 only checks
     * @return true if the process has exited, false on timeout
     * @throws IOException if the fd is invalid or poll fails
     */
    public static boolean pidfdAwait(int pidfd, long timeoutMillis) throws IOException {
        load();
        return pidfdAwait0(pidfd, timeoutMillis);
    }

    /**
     * Closes a file descriptor obtained from this class; errors are ignored, negative fds are
     * a no-op.
     *
     * @param fd the descriptor
     */
    public static void close(int fd) {
        if (fd < 0) {
            return;
        }
        load();
        close0(fd);
    }

    /**
     * Renames {@code from} to {@code to} in one step, refusing to replace anything there
     * ({@code renameat2(RENAME_NOREPLACE)}; where the filesystem lacks it, a plain rename,
     * which still refuses a non-empty directory).
     *
     * @throws java.nio.file.FileAlreadyExistsException when {@code to} exists
     */
    public static void renameNoReplace(Path from, Path to) throws IOException {
        load();
        renameNoReplace0(cstring(from.toString(), "path"), cstring(to.toString(), "path"));
    }

    /** {@link #tryLockFile}: another holder has the lock. */
    public static final int LOCK_HELD = -1;
    /** {@link #tryLockFile}: there is no such file (only when not asked to create it). */
    public static final int LOCK_FILE_MISSING = -2;

    /**
     * Opens {@code file} (made {@code 0600}, created when {@code create} is set, never through
     * a symbolic link) and takes an exclusive lock on it without waiting: an open file
     * description lock ({@code F_OFD_SETLK}), which belongs to the returned descriptor and goes
     * with {@link #close(int)} or the process. Unlike {@link java.nio.channels.FileChannel#tryLock()},
     * closing another descriptor of the same file in this process leaves it held.
     *
     * @return the descriptor holding the lock, {@link #LOCK_HELD} or {@link #LOCK_FILE_MISSING}
     * @throws java.nio.file.NoSuchFileException when asked to create it in a directory that is not there
     */
    public static int tryLockFile(Path file, boolean create) throws IOException {
        load();
        return tryLockFile0(cstring(file.toString(), "path"), create, false);
    }

    /**
     * {@link #tryLockFile} with a shared lock: any number of shared holders at once, none while
     * an exclusive one holds it, and no exclusive one while they do.
     */
    public static int tryLockFileShared(Path file, boolean create) throws IOException {
        load();
        return tryLockFile0(cstring(file.toString(), "path"), create, true);
    }

    /**
     * Whether someone, this process included, holds the lock {@link #tryLockFile} takes on
     * {@code file}, tested without taking it ({@code F_OFD_GETLK}); a missing file is not held.
     */
    public static boolean isLockHeld(Path file) throws IOException {
        load();
        return isLockHeld0(cstring(file.toString(), "path"));
    }

    // ------------------------------------------------------------------------------------
    // terminals

    /**
     * Whether a file descriptor is a terminal ({@code isatty(3)}); 0 is stdin, 1 stdout.
     *
     * @param fd the descriptor
     * @return true for a terminal
     */
    public static boolean isatty(int fd) {
        load();
        return isatty0(fd);
    }

    /**
     * Bytes a file occupies on disk ({@code st_blocks * 512}): for a sparse file, what is
     * really allocated, not its apparent size.
     *
     * @throws IOException if the file cannot be stat'ed
     */
    public static long allocatedBytes(Path file) throws IOException {
        load();
        return allocatedBytes0(file.toString().getBytes(StandardCharsets.UTF_8));
    }

    /**
     * The data extents of {@code file} as {@code [start, end)} pairs of byte offsets, from
     * {@code SEEK_DATA}/{@code SEEK_HOLE}: what a sparse copy must read; everything else is a hole.
     *
     * @throws IOException if the file cannot be opened or searched
     */
    public static long[] dataExtents(Path file) throws IOException {
        load();
        return dataExtents0(file.toString().getBytes(StandardCharsets.UTF_8));
    }

    /**
     * lstat of every entry under {@code root} (the root included, links not followed), in walk
     * order, as records of: the path relative to {@code root}, a NUL byte, then six
     * little-endian 64-bit numbers: mode, uid, gid, size, mtime and ctime in nanoseconds.
     * One native walk is an order of magnitude faster than the same stats through NIO.
     *
     * @throws IOException if the tree cannot be walked
     */
    public static byte[] statTree(Path root) throws IOException {
        load();
        return statTree0(root.toString().getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Puts a terminal into raw mode ({@code cfmakeraw}: no echo, no line editing, no signal
     * keys, no output processing; reads return after one byte) and returns the previous
     * settings for {@link #restoreMode(int, byte[])}.
     *
     * @param fd a terminal descriptor, usually 0
     * @return the saved {@code struct termios}, opaque
     * @throws IOException if {@code fd} is not a terminal or the mode cannot be set
     */
    public static byte[] enterRawMode(int fd) throws IOException {
        load();
        return enterRawMode0(fd);
    }

    /**
     * Restores terminal settings saved by {@link #enterRawMode(int)}.
     *
     * @param fd the terminal descriptor
     * @param saved the bytes {@link #enterRawMode(int)} returned
     * @throws IOException if the mode cannot be set
     * @throws IllegalArgumentException if {@code saved} did not come from {@link #enterRawMode}
     */
    public static void restoreMode(int fd, byte[] saved) throws IOException {
        Objects.requireNonNull(saved, "saved");
        load();
        restoreMode0(fd, saved);
    }

    /**
     * The size of a terminal ({@code TIOCGWINSZ}).
     *
     * @param fd a terminal descriptor
     * @return {@code {rows, cols}}
     * @throws IOException if {@code fd} is not a terminal
     */
    public static int[] windowSize(int fd) throws IOException {
        load();
        return windowSize0(fd);
    }

    /**
     * Waits up to {@code timeoutMillis} for {@code fd} to be readable, then reads what is there
     * (at most {@code buf.length}, at most 4096 bytes): unlike a read of {@code System.in},
     * the wait ends, so a reader thread can stop without consuming the next key press.
     *
     * @return the byte count, 0 when nothing came in time, -1 at end of file (or a hung-up terminal)
     * @throws IOException if the poll or the read fails
     */
    public static int readTimeout(int fd, byte[] buf, int timeoutMillis) throws IOException {
        load();
        return readTimeout0(fd, buf, timeoutMillis);
    }

    // ------------------------------------------------------------------------------------
    // helpers and natives

    private static byte[][] cstrings(String[] strings, String what) {
        byte[][] out = new byte[strings.length][];
        for (int i = 0; i < strings.length; i++) {
            out[i] = cstring(Objects.requireNonNull(strings[i], () -> what + " has a null element"), what);
        }
        return out;
    }

    private static byte[] cstring(String s, String what) {
        if (s.indexOf('\0') >= 0) {
            throw new IllegalArgumentException(what + " contains a NUL character: " + s.replace('\0', '?'));
        }
        byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
        byte[] out = new byte[utf8.length + 1];
        System.arraycopy(utf8, 0, out, 0, utf8.length);
        return out;
    }

    private static native int memfdCreate0(byte[] name, long size) throws IOException;

    private static native int spawn0(byte[][] argv, byte[][] env, byte[] workDir, byte[] outputPath,
            int parentDeathSignal, boolean newSession, int passFd) throws IOException;

    private static native int waitPid0(int pid) throws IOException;

    private static native boolean kill0(int pid, int signal) throws IOException;

    private static native int setsid0() throws IOException;

    private static native void setParentDeathSignal0(int signal) throws IOException;

    private static native int umask0(int mask);

    private static native int pidfdOpen0(int pid) throws IOException;

    private static native boolean pidfdSignal0(int pidfd, int signal) throws IOException;

    private static native boolean pidfdAwait0(int pidfd, long timeoutMillis) throws IOException;

    private static native void close0(int fd);

    private static native void renameNoReplace0(byte[] from, byte[] to) throws IOException;

    private static native int tryLockFile0(byte[] path, boolean create, boolean shared) throws IOException;

    private static native boolean isLockHeld0(byte[] path) throws IOException;

    private static native boolean isatty0(int fd);

    private static native byte[] statTree0(byte[] root) throws IOException;

    private static native byte[] enterRawMode0(int fd) throws IOException;

    private static native void restoreMode0(int fd, byte[] saved) throws IOException;

    private static native int[] windowSize0(int fd) throws IOException;

    private static native long allocatedBytes0(byte[] path) throws IOException;

    private static native long[] dataExtents0(byte[] path) throws IOException;

    private static native int readTimeout0(int fd, byte[] buf, int timeoutMillis) throws IOException;

    /**
     * Sets all twelve mode bits (setuid, setgid and sticky included, which NIO cannot) of
     * {@code path}; a symbolic link is left alone.
     */
    public static void chmod(Path path, int mode) throws IOException {
        load();
        chmod0(cstring(path.toString(), "path"), mode);
    }

    /** Sets an extended attribute of {@code path} itself (a symbolic link is not followed). */
    public static void lsetxattr(Path path, String name, byte[] value) throws IOException {
        java.util.Objects.requireNonNull(value, "value"); // the native side would crash the JVM on null
        load();
        lsetxattr0(cstring(path.toString(), "path"), cstring(name, "xattr name"), value);
    }

    /** Creates a device node or FIFO; {@code mode} carries the type bits ({@code 0020000} character, {@code 0060000} block, {@code 0010000} FIFO). */
    public static void mknod(Path path, int mode, int major, int minor) throws IOException {
        load();
        mknod0(cstring(path.toString(), "path"), mode, major, minor);
    }

    /** Sets the access and modification time of {@code path} itself, in seconds since the epoch; never opens it, never follows a link. */
    public static void lsetmtime(Path path, long epochSeconds) throws IOException {
        load();
        lsetmtime0(cstring(path.toString(), "path"), epochSeconds);
    }

    private static native void lsetmtime0(byte[] path, long seconds) throws IOException;

    private static native void chmod0(byte[] path, int mode) throws IOException;

    private static native void lsetxattr0(byte[] path, byte[] name, byte[] value) throws IOException;

    private static native void mknod0(byte[] path, int mode, int major, int minor) throws IOException;
}
